//! Persistence of the catalog: the store contract, and its SQL implementation
//! for SQLite (FTS5) and PostgreSQL (tsvector). One test suite
//! (`tests/store.rs`) runs the contract on both engines.

mod sql;

use std::future::Future;

use uuid::Uuid;

use crate::domain::{Category, CategorySlug, Cursor, Limit, Product, ProductDraft};

pub use sql::SqlCatalogStore;

/// The schema per engine: full-text search and the JSON column differ.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Brings `db` to the current schema.
pub async fn migrate(db: &chassis::db::Db) -> Result<(), chassis::db::DbError> {
    db.migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS).await?;
    // The outbox the store publishes product changes through.
    bus::migrate(db).await
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another product already has this SKU.
    #[error("sku {0} is taken")]
    SkuTaken(String),
    /// No product has this id.
    #[error("no such product")]
    NotFound,
    /// The product's version is not the expected one (someone else changed it).
    #[error("product is at version {current}")]
    VersionMismatch {
        /// The version the product is at now.
        current: i64,
    },
    /// The cursor was made for the other ordering (search vs browse).
    #[error("cursor does not belong to this query")]
    CursorMismatch,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A stored document no longer reads as a product.
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
}

impl From<bus::BusError> for StoreError {
    fn from(error: bus::BusError) -> Self {
        match error {
            bus::BusError::Db(db) => Self::Db(db),
            // Staging only writes to the database; anything else is a message that does not encode.
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// A category with how many products it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CategoryCount {
    /// The category's slug.
    #[schema(value_type = String, example = "electronics")]
    pub slug: CategorySlug,
    /// Its display name.
    pub name: String,
    /// How many products it holds.
    pub product_count: i64,
}

/// What to list: an optional search term, an optional category, a page.
#[derive(Debug, Clone, Default)]
pub struct ProductQuery {
    /// Words to search for; every word must match (as a prefix).
    pub search: Option<String>,
    /// Only products of this category.
    pub category: Option<CategorySlug>,
    /// The page size.
    pub limit: Limit,
    /// Where the page starts.
    pub after: Option<Cursor>,
}

/// One page of products and the cursor of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// The products, in the query's order.
    pub items: Vec<Product>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// The catalog's store contract. Implementations must keep writes atomic and
/// treat `version` as the optimistic-concurrency token.
pub trait CatalogStore: Send + Sync + 'static {
    /// Loads `categories` and `products` if the catalog is empty; returns whether it did.
    fn seed_if_empty(
        &self,
        categories: &[Category],
        products: &[(Uuid, ProductDraft)],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every category with its product count, in display order.
    fn categories(&self) -> impl Future<Output = Result<Vec<CategoryCount>, StoreError>> + Send;

    /// Whether a category exists.
    fn category_exists(&self, slug: &CategorySlug) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One product by id.
    fn product(&self, id: Uuid) -> impl Future<Output = Result<Option<Product>, StoreError>> + Send;

    /// A page of products.
    fn products(&self, query: &ProductQuery) -> impl Future<Output = Result<ProductPage, StoreError>> + Send;

    /// Stores a new product at version 1.
    fn create(&self, id: Uuid, draft: ProductDraft) -> impl Future<Output = Result<Product, StoreError>> + Send;

    /// Replaces product `id` if it is at `expected_version`; the result is at the next version.
    fn replace(
        &self,
        id: Uuid,
        expected_version: i64,
        draft: ProductDraft,
    ) -> impl Future<Output = Result<Product, StoreError>> + Send;
}
