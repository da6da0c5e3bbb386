//! Products: the raw request body a client sends, the validated draft it becomes,
//! and the stored product with its id and version; plus the list of field errors
//! a rejected body produces.

use std::fmt;

use chassis::problem::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    Attributes, CategorySlug, Currency, Description, ImageUrl, InvalidValue, Money, ProductName, Sku,
    money::check_amount,
};

/// A product body exactly as a client sent it (`POST /products`, `PUT
/// /products/{id}`), before any rule is checked.
///
/// Every field is optional here so that a missing field becomes one entry in
/// [`ValidationErrors`] alongside the others, instead of failing deserialisation
/// on the first one. Unknown fields are ignored, so a client may send back a
/// product as `GET` returned it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct ProductInput {
    /// Read-only: accepted so a body can be sent back as `GET` returned it.
    /// The path decides which product a `PUT` replaces.
    #[schema(read_only)]
    pub id: Option<Uuid>,
    /// Read-only: accepted so a body can be sent back as `GET` returned it.
    /// `If-Match` carries the version a `PUT` expects.
    #[schema(read_only)]
    pub version: Option<i64>,
    /// The SKU: 3 to 32 characters of A-Z, 0-9 and '-', starting with a letter;
    /// lower case is upper-cased.
    #[schema(required = true, value_type = String, example = "ELE-0001")]
    pub sku: Option<String>,
    /// The display name, 1 to 200 characters.
    #[schema(required = true, value_type = String, example = "Voltique Wireless Headphones Pro")]
    pub name: Option<String>,
    /// Up to 5000 characters; empty when left out.
    #[schema(value_type = String)]
    pub description: Option<String>,
    /// The price in minor units.
    #[schema(required = true, value_type = MoneyInput)]
    pub price: Option<MoneyInput>,
    /// The slug of an existing category.
    #[schema(required = true, value_type = String, example = "electronics")]
    pub category: Option<String>,
    /// Free-form attributes: a JSON object of at most 16 KiB; `{}` when left out.
    #[schema(value_type = Object)]
    pub attributes: Option<Value>,
    /// An http(s) image address, or null for none.
    #[schema(value_type = Option<String>, format = "uri")]
    pub image_url: Option<String>,
}

/// The raw `price` of a [`ProductInput`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub struct MoneyInput {
    /// The amount in minor units (cents), 0 to 10 000 000 000.
    #[schema(required = true, value_type = i64, minimum = 0, maximum = 10_000_000_000_i64, example = 1999)]
    pub amount: Option<i64>,
    /// A three-letter ISO 4217 code.
    #[schema(required = true, value_type = String, example = "USD")]
    pub currency: Option<String>,
}

impl From<&ProductDraft> for ProductInput {
    fn from(draft: &ProductDraft) -> Self {
        Self {
            id: None,
            version: None,
            sku: Some(draft.sku.to_string()),
            name: Some(draft.name.to_string()),
            description: Some(draft.description.to_string()),
            price: Some(MoneyInput {
                amount: Some(draft.price.amount()),
                currency: Some(draft.price.currency().to_string()),
            }),
            category: Some(draft.category.to_string()),
            attributes: Some(draft.attributes.clone().into_value()),
            image_url: draft.image_url.as_ref().map(ToString::to_string),
        }
    }
}

/// A product's content with every rule checked, not yet stored: what `POST`
/// creates and `PUT` replaces. Whether the category exists is for the
/// application layer to check, since that needs the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDraft {
    /// The SKU, unique across the catalog.
    pub sku: Sku,
    /// The display name.
    pub name: ProductName,
    /// The description, possibly empty.
    pub description: Description,
    /// The price.
    pub price: Money,
    /// The category's slug.
    pub category: CategorySlug,
    /// Free-form attributes.
    pub attributes: Attributes,
    /// The image address, if the product has one.
    pub image_url: Option<ImageUrl>,
}

impl ProductDraft {
    /// Checks every field of `input` and returns the draft, or every problem
    /// found (not only the first), named by its JSON path such as `price.amount`.
    pub fn validate(input: ProductInput) -> Result<ProductDraft, ValidationErrors> {
        let mut errors = ValidationErrors::default();

        let sku = errors.check("sku", required(input.sku).and_then(|s| Sku::parse(&s)));
        let name = errors.check("name", required(input.name).and_then(|s| ProductName::parse(&s)));
        let description = errors
            .check("description", input.description.map_or(Ok(Description::default()), |s| Description::parse(&s)));
        let price = match input.price {
            None => errors.check("price", required::<Money>(None)),
            Some(raw) => {
                let amount =
                    errors.check("price.amount", required(raw.amount).and_then(|a| check_amount(a).map(|()| a)));
                let currency = errors.check("price.currency", required(raw.currency).and_then(|c| Currency::parse(&c)));
                match (amount, currency) {
                    (Some(amount), Some(currency)) => errors.check("price", Money::new(amount, currency)),
                    _ => None,
                }
            }
        };
        let category = errors.check("category", required(input.category).and_then(|s| CategorySlug::parse(&s)));
        let attributes =
            errors.check("attributes", input.attributes.map_or(Ok(Attributes::default()), Attributes::new));
        let image_url = errors.check("image_url", input.image_url.map(|s| ImageUrl::parse(&s)).transpose());

        match (sku, name, description, price, category, attributes, image_url) {
            (
                Some(sku),
                Some(name),
                Some(description),
                Some(price),
                Some(category),
                Some(attributes),
                Some(image_url),
            ) => Ok(ProductDraft { sku, name, description, price, category, attributes, image_url }),
            // Every `None` above recorded an error, so this list is not empty.
            _ => Err(errors),
        }
    }
}

/// The value of a required field, or the error saying it is missing.
fn required<T>(value: Option<T>) -> Result<T, InvalidValue> {
    value.ok_or(InvalidValue::Format("is required"))
}

/// A stored product, in the public JSON shape:
/// `{id, sku, name, description, price: {amount, currency}, category, attributes, image_url, version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    /// The product's id: UUIDv7 for products created through the API, UUIDv5 of
    /// the SKU for seeded ones.
    pub id: Uuid,
    /// The SKU, unique across the catalog.
    pub sku: Sku,
    /// The display name.
    pub name: ProductName,
    /// The description, possibly empty.
    pub description: Description,
    /// The price.
    pub price: Money,
    /// The category's slug.
    pub category: CategorySlug,
    /// Free-form attributes.
    pub attributes: Attributes,
    /// The image address, or null.
    pub image_url: Option<ImageUrl>,
    /// Starts at 1 and grows by one with every replace; the ETag is built from it.
    #[schema(minimum = 1, example = 1)]
    pub version: i64,
}

impl Product {
    /// The product made of `draft` with the given id and version.
    pub fn from_draft(id: Uuid, version: i64, draft: ProductDraft) -> Self {
        let ProductDraft { sku, name, description, price, category, attributes, image_url } = draft;
        Self { id, sku, name, description, price, category, attributes, image_url, version }
    }

    /// The product's content without its id and version.
    pub fn to_draft(&self) -> ProductDraft {
        ProductDraft {
            sku: self.sku.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            price: self.price.clone(),
            category: self.category.clone(),
            attributes: self.attributes.clone(),
            image_url: self.image_url.clone(),
        }
    }
}

/// Every problem found in one request body, so a 422 can list them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// A list holding one error.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(field, message);
        errors
    }

    /// Adds an error for `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records `result`'s error under `field` and returns its value, if any.
    pub fn check<T>(&mut self, field: &str, result: Result<T, InvalidValue>) -> Option<T> {
        result.map_err(|e| self.push(field, e.to_string())).ok()
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, in the order the fields were checked.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The errors, by value.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid fields: ")?;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", error.field, error.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(body: Value) -> ProductInput {
        serde_json::from_value(body).unwrap()
    }

    fn valid_body() -> Value {
        json!({
            "sku": "ele-0001",
            "name": "  Voltique Wireless Headphones ",
            "description": "Over-ear, black.",
            "price": {"amount": 12999, "currency": "USD"},
            "category": "electronics",
            "attributes": {"brand": "Voltique", "color": "black"},
            "image_url": "https://img.bazaar.example/products/ELE-0001.jpg"
        })
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn valid_body_becomes_a_normalised_draft() {
        let draft = ProductDraft::validate(input(valid_body())).unwrap();
        assert_eq!(draft.sku.as_str(), "ELE-0001");
        assert_eq!(draft.name.as_str(), "Voltique Wireless Headphones");
        assert_eq!(draft.price.amount(), 12999);
        assert_eq!(draft.attributes.get("brand"), Some(&json!("Voltique")));
    }

    #[test]
    fn optional_fields_default_when_left_out_or_null() {
        let draft = ProductDraft::validate(input(json!({
            "sku": "BOO-0001",
            "name": "A Book",
            "price": {"amount": 999, "currency": "USD"},
            "category": "books",
            "image_url": null
        })))
        .unwrap();
        assert_eq!(draft.description.as_str(), "");
        assert!(draft.attributes.as_map().is_empty());
        assert_eq!(draft.image_url, None);
    }

    #[test]
    fn reports_every_invalid_field_at_once() {
        let errors = ProductDraft::validate(input(json!({
            "sku": "1",
            "name": "",
            "price": {"amount": -5, "currency": "dollars"},
            "category": "Not A Slug!",
            "attributes": [1],
            "image_url": "ftp://x"
        })))
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            ["sku", "name", "price.amount", "price.currency", "category", "attributes", "image_url"]
        );
    }

    #[test]
    fn reports_missing_required_fields_by_name() {
        let errors = ProductDraft::validate(input(json!({"price": {}}))).unwrap_err();
        assert_eq!(fields(&errors), ["sku", "name", "price.amount", "price.currency", "category"]);
        assert!(errors.errors().iter().all(|e| e.message == "is required"));

        let errors = ProductDraft::validate(ProductInput::default()).unwrap_err();
        assert_eq!(fields(&errors), ["sku", "name", "price", "category"]);
    }

    #[test]
    fn accepts_the_body_get_returns_including_id_version_and_unknown_fields() {
        let draft = ProductDraft::validate(input(valid_body())).unwrap();
        let product = Product::from_draft(Uuid::nil(), 3, draft.clone());
        let mut body = serde_json::to_value(&product).unwrap();
        body["something_new"] = json!(true);
        assert_eq!(ProductDraft::validate(input(body)).unwrap(), draft);
    }

    #[test]
    fn product_serialises_in_the_public_shape() {
        let draft = ProductDraft::validate(input(valid_body())).unwrap();
        let id = Uuid::nil();
        let product = Product::from_draft(id, 1, draft);
        assert_eq!(
            serde_json::to_value(&product).unwrap(),
            json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "sku": "ELE-0001",
                "name": "Voltique Wireless Headphones",
                "description": "Over-ear, black.",
                "price": {"amount": 12999, "currency": "USD"},
                "category": "electronics",
                "attributes": {"brand": "Voltique", "color": "black"},
                "image_url": "https://img.bazaar.example/products/ELE-0001.jpg",
                "version": 1
            })
        );
    }

    #[test]
    fn product_round_trips_through_json() {
        let draft = ProductDraft::validate(input(valid_body())).unwrap();
        let product = Product::from_draft(Uuid::now_v7(), 7, draft);
        let json = serde_json::to_string(&product).unwrap();
        assert_eq!(serde_json::from_str::<Product>(&json).unwrap(), product);
    }

    #[test]
    fn product_without_image_serialises_null_image_url() {
        let mut draft = ProductDraft::validate(input(valid_body())).unwrap();
        draft.image_url = None;
        let value = serde_json::to_value(Product::from_draft(Uuid::nil(), 1, draft)).unwrap();
        assert_eq!(value["image_url"], Value::Null);
    }

    #[test]
    fn draft_survives_the_trip_through_product_input() {
        let draft = ProductDraft::validate(input(valid_body())).unwrap();
        assert_eq!(ProductDraft::validate(ProductInput::from(&draft)).unwrap(), draft);
        assert_eq!(Product::from_draft(Uuid::nil(), 1, draft.clone()).to_draft(), draft);
    }

    #[test]
    fn validation_errors_read_as_sentences() {
        let mut errors = ValidationErrors::single("sku", "must start with a letter");
        errors.push("price.amount", "is required");
        assert_eq!(errors.to_string(), "invalid fields: sku must start with a letter; price.amount is required");
    }
}
