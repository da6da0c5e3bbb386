-- A read model of the test projection, migrated the way a service migrates its
-- own tables: version 1 in the service's history, beside the event store's.
CREATE TABLE type_counts (
    event_type TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
