-- The embedded bus's log: messages in publish order, consumer groups with
-- their positions and in-flight deliveries, and the dead-letter queue.
-- Times are milliseconds since the Unix epoch.

-- Every published message; `seq` is the publish order, `id` the envelope id (dedupe key).
CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    type         TEXT    NOT NULL,
    envelope     TEXT    NOT NULL,
    published_at INTEGER NOT NULL
);
-- A group's new messages are read per type from its position on.
CREATE INDEX messages_by_type ON messages (type, seq);

-- Consumer groups. `position` is the highest seq of the group's types handed
-- to it; everything after it of its types is new to the group.
CREATE TABLE groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    types       TEXT    NOT NULL,
    ack_wait_ms INTEGER NOT NULL,
    position    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- A group's messages delivered but not yet acked (or handed back, or
-- replayed). `attempts` counts deliveries so far; the row is deliverable
-- again once `visible_at` has passed.
CREATE TABLE pending (
    group_id   INTEGER NOT NULL REFERENCES groups (id),
    seq        INTEGER NOT NULL REFERENCES messages (seq),
    attempts   INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE INDEX pending_by_visibility ON pending (group_id, visible_at);

-- Messages a group gave up on; `n` keeps them in the order they died.
CREATE TABLE dead_letters (
    n        INTEGER PRIMARY KEY,
    id       TEXT    NOT NULL UNIQUE,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    seq      INTEGER NOT NULL REFERENCES messages (seq),
    error    TEXT    NOT NULL,
    attempts INTEGER NOT NULL,
    dead_at  INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_group ON dead_letters (group_id, n);
