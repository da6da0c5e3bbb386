//! What the catalog publishes on the bus: `catalog.product-changed.v1`
//! whenever a product is created (seeding included) or replaced, staged in the
//! outbox in the transaction that writes the product. Inventory creates stock
//! from it and orders keeps its local replica of names and prices with it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{CategorySlug, Money, Product, ProductName, Sku};

/// The data of `catalog.product-changed.v1`: the product as consumers need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    /// The product's id.
    pub product_id: Uuid,
    /// Its SKU.
    pub sku: Sku,
    /// Its display name.
    pub name: ProductName,
    /// Its price.
    pub price: Money,
    /// Its category's slug.
    pub category: CategorySlug,
    /// Its version after the change: a consumer keeps the highest it has seen,
    /// so a redelivered older change cannot roll it back.
    pub version: i64,
}

impl bus::Message for ProductChanged {
    const TYPE: &'static str = "catalog.product-changed.v1";
    const KIND: bus::Kind = bus::Kind::Event;
}

impl ProductChanged {
    /// The change that made `product` what it is.
    pub fn of(product: &Product) -> Self {
        Self {
            product_id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            price: product.price.clone(),
            category: product.category.clone(),
            version: product.version,
        }
    }

    /// Its envelope, published by the catalog about the product.
    pub fn envelope(product: &Product) -> Result<bus::Envelope, serde_json::Error> {
        bus::Envelope::new(crate::NAME, &product.id.to_string(), &Self::of(product))
    }
}
