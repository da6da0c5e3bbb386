-- The event store on SQLite. `global_position` is an INTEGER PRIMARY KEY so it
-- is the rowid: reads in global order walk the table itself.
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE snapshots (
    stream_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (stream_id, version)
);

CREATE TABLE projection_checkpoints (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
