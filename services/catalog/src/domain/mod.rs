//! The catalog's domain: products, categories and the values they are made of,
//! with the rules that make a value valid. Nothing here does I/O; the store, the
//! application layer and the HTTP handlers build on these types.
//!
//! Every value type is a newtype whose constructor validates (and, where it says
//! so, normalises) its input, and whose serde `Deserialize` goes through that same
//! constructor, so a value read from a request or from the database is as valid as
//! one built in code.

mod category;
mod fields;
mod money;
mod page;
mod product;
mod sku;

pub use category::{Category, CategorySlug};
pub use fields::{Attributes, Description, ImageUrl, ProductName};
pub use money::{Currency, Money};
pub use page::{Cursor, InvalidCursor, Limit};
pub use product::{MoneyInput, Product, ProductDraft, ProductInput, ValidationErrors};

/// One rejected field of a request: the problem document's own type, so a
/// [`ValidationErrors`] list goes into a 422 response as it is.
pub use chassis::problem::FieldError;
pub use sku::{PRODUCT_ID_NAMESPACE, Sku, product_id_for};

/// Why a raw value cannot become a domain value. The `Display` text is written
/// for the client: it completes a sentence that starts with the field's name
/// ("sku must start with a letter").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// The value is empty (or only whitespace) where something is required.
    #[error("must not be empty")]
    Empty,
    /// The value has fewer characters than the type allows.
    #[error("must be at least {min} characters long")]
    TooShort {
        /// The smallest number of characters allowed.
        min: usize,
    },
    /// The value has more characters than the type allows.
    #[error("must be at most {max} characters long")]
    TooLong {
        /// The largest number of characters allowed.
        max: usize,
    },
    /// The serialised value is bigger than the type allows.
    #[error("must be at most {max_bytes} bytes when serialised")]
    TooLarge {
        /// The largest serialised size allowed, in bytes.
        max_bytes: usize,
    },
    /// A number lies outside the range the type allows.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// The value does not have the required shape; the text says which.
    #[error("{0}")]
    Format(&'static str),
}
