-- The payments service's decisions, one per order: what makes a redelivered order free of a
-- second charge. Never the full card number.
CREATE TABLE payments (
    order_id     TEXT PRIMARY KEY,
    outcome      TEXT NOT NULL,       -- paid | rejected
    reason       TEXT,
    charge_id    TEXT,
    card_last4   TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    email        TEXT NOT NULL,
    restaurant   TEXT NOT NULL,
    decided_at   TIMESTAMPTZ NOT NULL
);
