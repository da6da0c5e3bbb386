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

-- Sign-in attempts, for throttling: recorded before the password is checked
-- (so parallel guesses cannot outrun the count) and removed when a sign-in
-- succeeds. The key is a UUIDv5 of the submitted email, never the email itself.
CREATE TABLE sign_in_attempts (
    attempt_key TEXT NOT NULL CHECK (length(attempt_key) = 36),
    at_unix     BIGINT NOT NULL
);
-- Counting one key's attempts in the window.
CREATE INDEX sign_in_attempts_by_key ON sign_in_attempts (attempt_key, at_unix);
-- Pruning every key's expired attempts, which each new attempt does.
CREATE INDEX sign_in_attempts_by_time ON sign_in_attempts (at_unix);
