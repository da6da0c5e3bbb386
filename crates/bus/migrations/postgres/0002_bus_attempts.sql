-- How often a consumer group started the handler of a redelivered message.
-- A message whose handler takes its process down (a crash, an out-of-memory
-- kill) is never settled, so only this count, committed before each start,
-- tells it apart from messages redelivered for other reasons (a database or
-- bus outage, a lost ack), which never started the handler or did finish it.
CREATE TABLE bus_attempts (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    starts BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
