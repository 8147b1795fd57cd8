-- The mailer's sent-log: at most one confirmation per order.
CREATE TABLE mail_sent (
    order_id    TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    transport   TEXT NOT NULL,        -- smtp | file
    sent_at     TIMESTAMP NOT NULL
);
