//! The catalog's commands and queries: what the HTTP handlers call. Validation
//! that needs the store (does the category exist?) happens here; rules that do
//! not live in `domain`.

use chassis::problem::FieldError;
use uuid::Uuid;

use crate::domain::{Product, ProductDraft, ProductInput};
use crate::seed;
use crate::store::{CatalogStore, CategoryCount, ProductPage, ProductQuery, SqlCatalogStore, StoreError};

/// Why a catalog operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input breaks one or more rules.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// No product with that id.
    #[error("not found")]
    NotFound,
    /// The SKU belongs to another product.
    #[error("sku {0} is taken")]
    SkuTaken(String),
    /// A replace came without the version it expects.
    #[error("If-Match is required")]
    PreconditionRequired,
    /// A replace expected a version the product is no longer at.
    #[error("product is at version {current}")]
    Stale {
        /// The version the product is at.
        current: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SkuTaken(sku) => Self::SkuTaken(sku),
            StoreError::NotFound => Self::NotFound,
            StoreError::VersionMismatch { current } => Self::Stale { current },
            StoreError::CursorMismatch => {
                Self::Invalid(vec![FieldError::new("cursor", "belongs to a different query; start without it")])
            }
            other => Self::Store(other),
        }
    }
}

/// The catalog application over a store.
#[derive(Debug, Clone)]
pub struct Catalog<S = SqlCatalogStore> {
    store: S,
}

impl<S: CatalogStore> Catalog<S> {
    /// The application over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Loads the demo catalog into an empty store; returns whether it did.
    pub async fn seed_demo(&self) -> Result<bool, AppError> {
        let (categories, drafts) = seed::demo_catalog();
        let products: Vec<_> = drafts.into_iter().map(|d| (crate::domain::product_id_for(&d.sku), d)).collect();
        Ok(self.store.seed_if_empty(&categories, &products).await?)
    }

    /// Every category with its product count.
    pub async fn categories(&self) -> Result<Vec<CategoryCount>, AppError> {
        Ok(self.store.categories().await?)
    }

    /// One product.
    pub async fn product(&self, id: Uuid) -> Result<Product, AppError> {
        self.store.product(id).await?.ok_or(AppError::NotFound)
    }

    /// A page of products.
    pub async fn products(&self, query: &ProductQuery) -> Result<ProductPage, AppError> {
        Ok(self.store.products(query).await?)
    }

    /// Creates a product from a client's body.
    pub async fn create(&self, input: ProductInput) -> Result<Product, AppError> {
        let draft = self.validate(input).await?;
        Ok(self.store.create(Uuid::now_v7(), draft).await?)
    }

    /// Replaces product `id` with a client's body, if it is at `if_match`.
    pub async fn replace(&self, id: Uuid, if_match: Option<i64>, input: ProductInput) -> Result<Product, AppError> {
        let expected = if_match.ok_or(AppError::PreconditionRequired)?;
        let draft = self.validate(input).await?;
        Ok(self.store.replace(id, expected, draft).await?)
    }

    async fn validate(&self, input: ProductInput) -> Result<ProductDraft, AppError> {
        let draft = ProductDraft::validate(input).map_err(|errors| AppError::Invalid(errors.into_errors()))?;
        if !self.store.category_exists(&draft.category).await? {
            return Err(AppError::Invalid(vec![FieldError::new(
                "category",
                format!("no category `{}`; GET /api/v1/categories lists them", draft.category),
            )]));
        }
        Ok(draft)
    }
}
