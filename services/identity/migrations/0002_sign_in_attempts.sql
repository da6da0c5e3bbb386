-- Sign-in attempts replace login failures. An attempt is recorded before the
-- password is checked (so parallel guesses cannot outrun the count) and a
-- sign-in that succeeds withdraws its own attempt, found by its id, and no
-- other. The key is a UUIDv5 of the submitted email, never the email itself.
-- The old table's failures are dropped with it rather than carried over: they
-- are keyed by the address itself, which this table never holds, and at worst
-- an email starts the upgrade with a fresh count.
DROP TABLE login_failures;

CREATE TABLE sign_in_attempts (
    attempt_id  TEXT PRIMARY KEY CHECK (length(attempt_id) = 36),   -- UUIDv7
    attempt_key TEXT NOT NULL CHECK (length(attempt_key) = 36),
    at_unix     BIGINT NOT NULL
);
-- Counting one key's attempts in the window.
CREATE INDEX sign_in_attempts_by_key ON sign_in_attempts (attempt_key, at_unix);
-- Pruning every key's expired attempts, which each new attempt does.
CREATE INDEX sign_in_attempts_by_time ON sign_in_attempts (at_unix);
