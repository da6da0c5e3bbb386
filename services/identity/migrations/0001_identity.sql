-- Write side: the User aggregate's state, read only by commands (register, login).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,      -- comma-separated, sorted
    created_at    TEXT NOT NULL       -- RFC 3339 UTC
);

-- Read side: the profile query model, fed by the user events in the same
-- transaction as the write. Queries never touch `users`.
CREATE TABLE user_profiles (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    roles      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Failed sign-ins per submitted email (whether or not an account exists), for throttling.
CREATE TABLE login_failures (
    email_key TEXT NOT NULL,
    at_unix   BIGINT NOT NULL
);
CREATE INDEX login_failures_by_key ON login_failures (email_key, at_unix);
