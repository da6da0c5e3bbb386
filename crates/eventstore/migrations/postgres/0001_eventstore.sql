-- The event store on PostgreSQL. Positions are assigned by the appender under
-- an advisory lock, not by a sequence, so they commit in order without gaps.
CREATE TABLE events (
    global_position BIGINT PRIMARY KEY,
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
