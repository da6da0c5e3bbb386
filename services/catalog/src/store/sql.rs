//! The catalog store on SQL. The SQL is shared between SQLite and PostgreSQL
//! except for full-text search (FTS5 `MATCH` + `bm25` vs `tsvector @@
//! tsquery` + `ts_rank`) and the JSON column type (TEXT vs JSONB).

use chassis::db::{Db, Dialect};
use sqlx::{AssertSqlSafe, Row as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{CatalogStore, CategoryCount, ProductPage, ProductQuery, StoreError};
use crate::domain::{Category, CategorySlug, Cursor, Product, ProductDraft};

/// Search terms beyond this many are ignored, which bounds the cost of one query.
const MAX_SEARCH_TERMS: usize = 8;

/// The catalog store on a [`Db`] of either dialect.
#[derive(Debug, Clone)]
pub struct SqlCatalogStore {
    db: Db,
    outbox: bus::Outbox,
}

impl SqlCatalogStore {
    /// A store on `db` (already migrated), publishing through the outbox in `db`.
    pub fn new(db: Db) -> Self {
        Self { outbox: bus::Outbox::new(db.clone()), db }
    }

    /// The outbox the store stages its events in, for the relay.
    pub fn outbox(&self) -> &bus::Outbox {
        &self.outbox
    }

    /// Stages `catalog.product-changed.v1` for `product` in the open transaction.
    async fn stage_changed(tx: &mut sqlx::AnyConnection, product: &Product) -> Result<(), StoreError> {
        let envelope =
            crate::messages::ProductChanged::envelope(product).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(bus::Outbox::stage(tx, &envelope).await?)
    }

    /// The `doc` column as text, whatever its type.
    fn doc_column(&self) -> &'static str {
        match self.db.dialect() {
            Dialect::Sqlite => "doc",
            Dialect::Postgres => "doc::text",
        }
    }

    /// Inserts a new product at version 1 inside `tx`.
    async fn insert(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: Uuid,
        draft: ProductDraft,
        at: &str,
    ) -> Result<Product, StoreError> {
        let text = search_text(&draft);
        let product = Product::from_draft(id, 1, draft);
        let sql = format!(
            "INSERT INTO products (id, sku, category, name, search_text, doc, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5, {}, 1, $7)",
            self.doc_param(6)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(product.sku.as_str())
            .bind(product.category.as_str())
            .bind(product.name.as_str())
            .bind(text)
            .bind(encode(&product)?)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, product.sku.as_str()))?;
        Self::stage_changed(tx, &product).await?;
        Ok(product)
    }

    /// The placeholder for a JSON document parameter.
    fn doc_param(&self, n: usize) -> String {
        match self.db.dialect() {
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("CAST(${n} AS JSONB)"),
        }
    }
}

/// The words of a search, made safe for both FTS5 and tsquery syntax by
/// keeping only letters and digits.
fn search_terms(search: &str) -> Vec<String> {
    search
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SEARCH_TERMS)
        .map(|w| w.chars().take(40).collect::<String>().to_lowercase())
        .collect()
}

/// The text searched besides the name: the description and attribute values.
fn search_text(draft: &ProductDraft) -> String {
    let mut text = draft.description.as_str().to_owned();
    for value in draft.attributes.as_map().values() {
        let word = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        text.push(' ');
        text.push_str(&word);
    }
    text
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

fn decode(doc: &str) -> Result<Product, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(product: &Product) -> Result<String, StoreError> {
    serde_json::to_string(product).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn map_unique(error: sqlx::Error, sku: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::SkuTaken(sku.to_owned()),
        _ => StoreError::Db(error),
    }
}

impl CatalogStore for SqlCatalogStore {
    async fn seed_if_empty(
        &self,
        categories: &[Category],
        products: &[(Uuid, ProductDraft)],
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM categories").fetch_one(&mut *tx).await?;
        if existing > 0 {
            return Ok(false);
        }
        for (position, category) in (0_i64..).zip(categories) {
            sqlx::query("INSERT INTO categories (slug, name, position) VALUES ($1, $2, $3)")
                .bind(category.slug.as_str())
                .bind(&category.name)
                .bind(position)
                .execute(&mut *tx)
                .await?;
        }
        let at = now();
        for (id, draft) in products {
            self.insert(&mut tx, *id, draft.clone(), &at).await?;
        }
        tx.commit().await?;
        self.outbox.notify();
        Ok(true)
    }

    async fn categories(&self) -> Result<Vec<CategoryCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.slug, c.name, COUNT(p.id) AS product_count FROM categories c \
             LEFT JOIN products p ON p.category = c.slug \
             GROUP BY c.slug, c.name, c.position ORDER BY c.position",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.into_iter()
            .map(|row| {
                let slug: String = row.try_get("slug")?;
                Ok(CategoryCount {
                    slug: CategorySlug::parse(&slug).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    name: row.try_get("name")?,
                    product_count: row.try_get("product_count")?,
                })
            })
            .collect()
    }

    async fn category_exists(&self, slug: &CategorySlug) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar("SELECT slug FROM categories WHERE slug = $1")
            .bind(slug.as_str())
            .fetch_optional(self.db.reader())
            .await?;
        Ok(found.is_some())
    }

    async fn product(&self, id: Uuid) -> Result<Option<Product>, StoreError> {
        let sql = format!("SELECT {} FROM products WHERE id = $1", self.doc_column());
        let doc: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(self.db.reader()).await?;
        doc.as_deref().map(decode).transpose()
    }

    async fn products(&self, query: &ProductQuery) -> Result<ProductPage, StoreError> {
        let terms = query.search.as_deref().map(search_terms).unwrap_or_default();
        let limit = i64::from(query.limit.get());
        // One row more than the page tells whether there is a next page.
        let fetch = limit + 1;
        let mut binds: Vec<BindValue> = Vec::new();
        let mut param = |value: BindValue| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let searching = !terms.is_empty();
        let sql = if searching {
            let (inner, score) = match self.db.dialect() {
                Dialect::Sqlite => {
                    let fts = terms.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" ");
                    let p = param(BindValue::Text(fts));
                    (
                        format!(
                            "SELECT p.doc AS doc, p.id AS id, p.category AS category, \
                             bm25(products_fts, 10.0, 1.0) AS score \
                             FROM products_fts JOIN products p ON p.seq = products_fts.rowid \
                             WHERE products_fts MATCH {p}"
                        ),
                        "score",
                    )
                }
                Dialect::Postgres => {
                    let tsquery = terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" & ");
                    let p = param(BindValue::Text(tsquery));
                    (
                        format!(
                            "SELECT p.doc::text AS doc, p.id AS id, p.category AS category, \
                             (-ts_rank(p.search, q))::float8 AS score \
                             FROM products p, to_tsquery('english', {p}) q WHERE p.search @@ q"
                        ),
                        "score",
                    )
                }
            };
            let mut conditions = Vec::new();
            if let Some(category) = &query.category {
                conditions.push(format!("category = {}", param(BindValue::Text(category.as_str().to_owned()))));
            }
            match &query.after {
                Some(Cursor::Rank { rank, id }) => {
                    let r = param(BindValue::Float(*rank));
                    let r2 = param(BindValue::Float(*rank));
                    let i = param(BindValue::Text(id.to_string()));
                    conditions.push(format!("({score} > {r} OR ({score} = {r2} AND id > {i}))"));
                }
                Some(Cursor::Sku { .. }) => return Err(StoreError::CursorMismatch),
                None => {}
            }
            let filter =
                if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
            let l = param(BindValue::Int(fetch));
            format!("SELECT doc, {score} AS score FROM ({inner}) s {filter} ORDER BY {score}, id LIMIT {l}")
        } else {
            let mut conditions = Vec::new();
            if let Some(category) = &query.category {
                conditions.push(format!("category = {}", param(BindValue::Text(category.as_str().to_owned()))));
            }
            match &query.after {
                Some(Cursor::Sku { sku, id }) => {
                    let s = param(BindValue::Text(sku.as_str().to_owned()));
                    let s2 = param(BindValue::Text(sku.as_str().to_owned()));
                    let i = param(BindValue::Text(id.to_string()));
                    conditions.push(format!("(sku > {s} OR (sku = {s2} AND id > {i}))"));
                }
                Some(Cursor::Rank { .. }) => return Err(StoreError::CursorMismatch),
                None => {}
            }
            let filter =
                if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
            let l = param(BindValue::Int(fetch));
            format!("SELECT {doc} AS doc FROM products {filter} ORDER BY sku, id LIMIT {l}", doc = self.doc_column())
        };
        let mut statement = sqlx::query(AssertSqlSafe(sql));
        for value in binds {
            statement = match value {
                BindValue::Text(s) => statement.bind(s),
                BindValue::Float(f) => statement.bind(f),
                BindValue::Int(i) => statement.bind(i),
            };
        }
        let rows = statement.fetch_all(self.db.reader()).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last_score = 0.0_f64;
        for row in rows.iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
            let doc: String = row.try_get("doc")?;
            if searching {
                last_score = row.try_get("score")?;
            }
            items.push(decode(&doc)?);
        }
        let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let next = match items.last() {
            Some(last) if has_more => Some(if searching {
                Cursor::Rank { rank: last_score, id: last.id }
            } else {
                Cursor::Sku { sku: last.sku.clone(), id: last.id }
            }),
            _ => None,
        };
        Ok(ProductPage { items, next })
    }

    async fn create(&self, id: Uuid, draft: ProductDraft) -> Result<Product, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let product = self.insert(&mut tx, id, draft, &now()).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(product)
    }

    async fn replace(&self, id: Uuid, expected_version: i64, draft: ProductDraft) -> Result<Product, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT version FROM products WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        match current {
            None => return Err(StoreError::NotFound),
            Some(current) if current != expected_version => {
                return Err(StoreError::VersionMismatch { current });
            }
            Some(_) => {}
        }
        let text = search_text(&draft);
        let product = Product::from_draft(id, expected_version + 1, draft);
        let sql = format!(
            "UPDATE products SET sku = $1, category = $2, name = $3, search_text = $4, doc = {}, \
             version = $6, updated_at = $7 WHERE id = $8 AND version = $9",
            self.doc_param(5)
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(product.sku.as_str())
            .bind(product.category.as_str())
            .bind(product.name.as_str())
            .bind(text)
            .bind(encode(&product)?)
            .bind(product.version)
            .bind(now())
            .bind(id.to_string())
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, product.sku.as_str()))?;
        // On PostgreSQL a concurrent replace may commit between the read above
        // and this update; the version guard then matches no row.
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            let current = self.product(id).await?.map_or(expected_version + 1, |p| p.version);
            return Err(StoreError::VersionMismatch { current });
        }
        Self::stage_changed(&mut tx, &product).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(product)
    }
}

/// A value bound to a dynamically built query.
enum BindValue {
    Text(String),
    Float(f64),
    Int(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_keep_only_words_so_query_syntax_cannot_leak_in() {
        assert_eq!(search_terms("head\"phones* OR NOT:x"), vec!["head", "phones", "or", "not", "x"]);
        assert_eq!(search_terms("  ---  "), Vec::<String>::new());
        assert_eq!(search_terms("a b c d e f g h i j").len(), MAX_SEARCH_TERMS);
    }
}
