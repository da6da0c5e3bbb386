-- A schema for the chassis's own tests of migration.
CREATE TABLE demo (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE demo_more (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
