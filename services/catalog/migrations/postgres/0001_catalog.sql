-- The catalog's document model on PostgreSQL: each product is a JSONB document,
-- with a generated tsvector for full-text search.
CREATE TABLE categories (
    slug     TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    position BIGINT NOT NULL
);

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    category    TEXT NOT NULL REFERENCES categories (slug),
    name        TEXT NOT NULL,
    search_text TEXT NOT NULL,
    doc         JSONB NOT NULL,
    version     BIGINT NOT NULL,
    updated_at  TEXT NOT NULL,
    search      TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('english', search_text), 'B')
    ) STORED
);

CREATE INDEX products_by_sku ON products (sku, id);
CREATE INDEX products_by_category ON products (category, sku, id);
CREATE INDEX products_search ON products USING GIN (search);
