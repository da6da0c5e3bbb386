-- The bus tables inside a service's own SQLite database.

-- Messages committed with the state change that produced them, waiting for the
-- relay. A row is deleted once the transport has stored the message.
CREATE TABLE bus_outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Which relay (of the service's replicas) may send right now, and until when.
CREATE TABLE bus_relay_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
INSERT INTO bus_relay_lease (name, holder, expires_at_ms) VALUES ('outbox', '', 0);

-- Messages a consumer group has handled, recorded in the handler's transaction.
CREATE TABLE bus_inbox (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    handled_at_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX bus_inbox_handled_at ON bus_inbox (handled_at_ms);
