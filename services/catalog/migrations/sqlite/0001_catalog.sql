-- The catalog's document model on SQLite: each product is a JSON document,
-- with the fields that queries filter, sort or search on kept beside it.
CREATE TABLE categories (
    slug     TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE products (
    seq         INTEGER PRIMARY KEY,            -- the FTS5 rowid
    id          TEXT NOT NULL UNIQUE,
    sku         TEXT NOT NULL UNIQUE,
    category    TEXT NOT NULL REFERENCES categories (slug),
    name        TEXT NOT NULL,
    search_text TEXT NOT NULL,                  -- description and attribute values
    doc         TEXT NOT NULL,                  -- the product as the API returns it
    version     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE INDEX products_by_sku ON products (sku, id);
CREATE INDEX products_by_category ON products (category, sku, id);

CREATE VIRTUAL TABLE products_fts USING fts5 (
    name, search_text,
    content = 'products', content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, search_text) VALUES (new.seq, new.name, new.search_text);
END;

CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, search_text)
    VALUES ('delete', old.seq, old.name, old.search_text);
END;

CREATE TRIGGER products_fts_update AFTER UPDATE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, search_text)
    VALUES ('delete', old.seq, old.name, old.search_text);
    INSERT INTO products_fts (rowid, name, search_text) VALUES (new.seq, new.name, new.search_text);
END;
