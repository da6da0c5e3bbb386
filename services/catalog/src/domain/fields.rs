//! The free-text and free-form parts of a product: name, description, image
//! address and attributes, each bounded so one product cannot grow without limit.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::InvalidValue;

/// A product's display name: 1 to 200 characters after trimming, on one line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "Voltique Wireless Headphones Pro")]
pub struct ProductName(String);

impl ProductName {
    /// The most characters a name may have.
    pub const MAX_CHARS: usize = 200;

    /// Trims and validates `input` into a name.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let name = input.trim();
        if name.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong { max: Self::MAX_CHARS });
        }
        // Names end up in listings, e-mails and log lines, where a line break or
        // an escape sequence would do harm.
        if name.chars().any(char::is_control) {
            return Err(InvalidValue::Format("must not contain control characters or line breaks"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for ProductName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product's description: at most 5000 characters after trimming, possibly
/// empty, line breaks and tabs allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "Over-ear headphones with 40-hour battery and a brushed aluminium frame.")]
pub struct Description(String);

impl Description {
    /// The most characters a description may have.
    pub const MAX_CHARS: usize = 5000;

    /// Trims and validates `input` into a description.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let text = input.trim();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong { max: Self::MAX_CHARS });
        }
        if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(InvalidValue::Format("must not contain control characters other than line breaks and tabs"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The description as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address of a product image: an `http` or `https` URL with a host, at
/// most 2048 characters, without whitespace. A product without an image has no
/// `ImageUrl` at all (`Option<ImageUrl>`), never an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, format = "uri", example = "https://img.bazaar.example/products/ELE-0001.jpg")]
pub struct ImageUrl(String);

impl ImageUrl {
    /// The most characters an image address may have.
    pub const MAX_CHARS: usize = 2048;

    /// Trims and validates `input` into an image address.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let url = input.trim();
        if url.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if url.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong { max: Self::MAX_CHARS });
        }
        let rest = strip_prefix_ignore_ascii_case(url, "https://")
            .or_else(|| strip_prefix_ignore_ascii_case(url, "http://"))
            .ok_or(InvalidValue::Format("must be an http:// or https:// URL"))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(InvalidValue::Format("must name a host after the scheme"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue::Format("must not contain whitespace; percent-encode it"));
        }
        Ok(Self(url.to_owned()))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` without `prefix`, if it starts with it in any letter case: URL
/// schemes are case-insensitive.
fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

impl TryFrom<String> for ImageUrl {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for ImageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product's free-form attributes (brand, colour, pages, ...): a JSON object
/// whose compact serialisation is at most 16 KiB. Values may be any JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "Value")]
#[schema(value_type = Object, example = json!({"brand": "Voltique", "color": "black", "weight_g": 250}))]
pub struct Attributes(Map<String, Value>);

impl Attributes {
    /// The largest compact JSON serialisation allowed, in bytes.
    pub const MAX_BYTES: usize = 16 * 1024;

    /// Validates that `value` is an object of acceptable size.
    pub fn new(value: Value) -> Result<Self, InvalidValue> {
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(InvalidValue::Format("must be a JSON object")),
        }
    }

    /// Validates that `map` is of acceptable size and holds no NUL character.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, InvalidValue> {
        // NUL has no place in an attribute, and PostgreSQL's JSONB cannot store it.
        if map.iter().any(|(key, value)| key.contains('\0') || has_nul(value)) {
            return Err(InvalidValue::Format("must not contain NUL characters"));
        }
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, &map).map_err(|_| InvalidValue::Format("must be serialisable as JSON"))?;
        if counter.0 > Self::MAX_BYTES {
            return Err(InvalidValue::TooLarge { max_bytes: Self::MAX_BYTES });
        }
        Ok(Self(map))
    }

    /// The attributes as a JSON map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The value of one attribute, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The attributes as a JSON object value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// Whether any string or key inside `value` contains a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl TryFrom<Value> for Attributes {
    type Error = InvalidValue;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

/// Counts bytes written, so the size check needs no buffer.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    #[test]
    fn attributes_refuse_nul_in_keys_and_nested_values() {
        for bad in [json!({"a\u{0}": 1}), json!({"colour": "te\u{0}al"}), json!({"sizes": ["S", {"x": "\u{0}"}]})] {
            assert!(Attributes::new(bad.clone()).is_err(), "{bad}");
        }
        assert!(Attributes::new(json!({"note": "tab\tand line\nbreak"})).is_ok());
    }

    #[test]
    fn name_is_trimmed() {
        assert_eq!(ProductName::parse("  Desk Lamp \n").unwrap().as_str(), "Desk Lamp");
    }

    #[test]
    fn rejects_blank_name() {
        assert_eq!(ProductName::parse(" \t "), Err(InvalidValue::Empty));
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        assert!(ProductName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(ProductName::parse(&"é".repeat(201)), Err(InvalidValue::TooLong { max: 200 }));
    }

    #[test]
    fn rejects_name_with_a_line_break_inside() {
        assert!(ProductName::parse("Desk\nLamp").is_err());
    }

    #[test]
    fn description_may_be_empty_or_span_lines() {
        assert_eq!(Description::parse("   ").unwrap().as_str(), "");
        assert!(Description::parse("Line one.\nLine two.\tTabbed.").is_ok());
    }

    #[test]
    fn rejects_description_over_5000_characters() {
        assert!(Description::parse(&"x".repeat(5000)).is_ok());
        assert_eq!(Description::parse(&"x".repeat(5001)), Err(InvalidValue::TooLong { max: 5000 }));
    }

    #[test]
    fn rejects_description_with_escape_characters() {
        assert!(Description::parse("bell \u{7}").is_err());
    }

    #[test]
    fn accepts_http_and_https_image_urls() {
        assert!(ImageUrl::parse("https://img.bazaar.example/products/ELE-0001.jpg").is_ok());
        assert!(ImageUrl::parse("http://localhost:8080/a.png").is_ok());
        assert!(ImageUrl::parse("HTTPS://img.example/a.png").is_ok());
    }

    #[test]
    fn rejects_image_urls_with_other_schemes_or_no_host() {
        for bad in ["ftp://x/a.png", "javascript:alert(1)", "img.example/a.png", "https://", "https:///a.png"] {
            assert!(ImageUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(ImageUrl::parse(""), Err(InvalidValue::Empty));
    }

    #[test]
    fn rejects_image_urls_with_spaces_or_over_2048_characters() {
        assert!(ImageUrl::parse("https://img.example/my photo.png").is_err());
        let long = format!("https://img.example/{}", "a".repeat(2048));
        assert_eq!(ImageUrl::parse(&long), Err(InvalidValue::TooLong { max: 2048 }));
    }

    #[test]
    fn attributes_must_be_an_object() {
        assert!(Attributes::new(json!({"brand": "Voltique"})).is_ok());
        for bad in [json!([1, 2]), json!("brand"), json!(null), json!(3)] {
            assert_eq!(Attributes::new(bad), Err(InvalidValue::Format("must be a JSON object")));
        }
    }

    #[test]
    fn attributes_may_be_at_most_16_kib() {
        // {"k":"..."} adds 8 bytes around the value.
        let fits = json!({"k": "x".repeat(Attributes::MAX_BYTES - 8)});
        assert!(Attributes::new(fits).is_ok());
        let too_big = json!({"k": "x".repeat(Attributes::MAX_BYTES - 7)});
        assert_eq!(Attributes::new(too_big), Err(InvalidValue::TooLarge { max_bytes: 16 * 1024 }));
    }

    #[test]
    fn attributes_serialise_as_the_object_itself() {
        let attrs = Attributes::new(json!({"pages": 320, "author": "A. Writer"})).unwrap();
        assert_eq!(serde_json::to_value(&attrs).unwrap(), json!({"pages": 320, "author": "A. Writer"}));
        assert_eq!(serde_json::from_value::<Attributes>(json!({"pages": 320, "author": "A. Writer"})).unwrap(), attrs);
        assert!(serde_json::from_value::<Attributes>(json!([])).is_err());
    }
}
