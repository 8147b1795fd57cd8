-- The restaurants app's orders database: the restaurant list, the orders, their status history.
CREATE TABLE restaurants (
    name        TEXT PRIMARY KEY,
    style       TEXT NOT NULL,
    vegetarian  BOOLEAN NOT NULL,
    delivery    BOOLEAN NOT NULL
);

CREATE TABLE orders (
    order_id     TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    restaurant   TEXT NOT NULL,
    -- Only the last four digits: the full number travels once, to the payments service.
    card_last4   TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    status       TEXT NOT NULL,
    status_rank  INTEGER NOT NULL,
    placed_at    TIMESTAMPTZ NOT NULL
);

-- One row per status an order reached; redelivered status records hit the primary key.
CREATE TABLE order_status (
    order_id  TEXT NOT NULL,
    status    TEXT NOT NULL,
    rank      INTEGER NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    reason    TEXT,
    PRIMARY KEY (order_id, status)
);
