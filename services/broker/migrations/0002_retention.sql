-- Retention deletes old messages that no group holds: find them by age, and
-- check "held" (pending or dead-lettered) by message without scanning.
CREATE INDEX messages_by_age ON messages (published_at);
CREATE INDEX pending_by_seq ON pending (seq);
CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
