//! Reading a sign-up request: the raw body as the client sent it, and its
//! validation into domain values with every problem reported at once.

use std::fmt;

use serde::Deserialize;

use super::{DisplayName, Email, Password};

/// The body of `POST /api/v1/users`, as sent.
///
/// Every field defaults to empty so that a missing field is reported by
/// [`RegistrationInput::validate`] alongside the other problems, instead of
/// failing deserialisation on the first one.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct RegistrationInput {
    /// The sign-in address; stored trimmed and lowercased.
    #[serde(default)]
    #[schema(required = true, example = "ada@example.com", format = "email")]
    pub email: String,
    /// At least 10 characters with a letter and a digit or symbol; not a common password.
    #[serde(default)]
    #[schema(required = true, example = "correct-horse-42", format = "password", min_length = 10, max_length = 128)]
    pub password: String,
    /// The name to be shown by, 1 to 100 characters.
    #[serde(default)]
    #[schema(required = true, example = "Ada Lovelace", min_length = 1, max_length = 100)]
    pub name: String,
}

impl fmt::Debug for RegistrationInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationInput")
            .field("email", &self.email)
            .field("password", &"***")
            .field("name", &self.name)
            .finish()
    }
}

/// A sign-up request whose every field is valid.
#[derive(Debug, Clone)]
pub struct ValidRegistration {
    /// The normalised address.
    pub email: Email,
    /// The password that passed the policy, still to be hashed.
    pub password: Password,
    /// The trimmed display name.
    pub name: DisplayName,
}

/// One invalid field of a request, as listed in a 422 problem's `errors`: the
/// chassis's type, so validation errors go straight into a problem document.
pub use chassis::problem::FieldError;

/// Every problem found in one request; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), describe(.0))]
pub struct ValidationErrors(Vec<FieldError>);

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

impl ValidationErrors {
    /// The problems, in field order.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The problems, owned, to put into a problem document.
    pub fn into_inner(self) -> Vec<FieldError> {
        self.0
    }
}

impl RegistrationInput {
    /// Checks every field, returning the domain values or every problem found.
    pub fn validate(self) -> Result<ValidRegistration, ValidationErrors> {
        let mut errors = Vec::new();

        let email = Email::parse(&self.email).map_err(|e| errors.push(FieldError::new("email", e.to_string()))).ok();

        let violations = Password::violations(&self.password);
        for broken in &violations {
            errors.push(FieldError::new("password", broken.to_string()));
        }
        // A password that is the address itself is the first thing an attacker tries.
        if let Some(email) = &email
            && self.password.trim().eq_ignore_ascii_case(email.as_str())
        {
            errors.push(FieldError::new("password", "must not be the same as the email"));
        }
        let password = Password::parse(&self.password).ok();

        let name = DisplayName::parse(&self.name).map_err(|e| errors.push(FieldError::new("name", e.to_string()))).ok();

        match (email, password, name) {
            (Some(email), Some(password), Some(name)) if errors.is_empty() => {
                Ok(ValidRegistration { email, password, name })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(email: &str, password: &str, name: &str) -> RegistrationInput {
        RegistrationInput { email: email.into(), password: password.into(), name: name.into() }
    }

    #[test]
    fn accepts_a_valid_registration_and_normalises_it() {
        let valid = input(" Ada@Example.com ", "correct-horse-42", " Ada ").validate().unwrap();
        assert_eq!(valid.email.as_str(), "ada@example.com");
        assert_eq!(valid.password.expose(), "correct-horse-42");
        assert_eq!(valid.name.as_str(), "Ada");
    }

    #[test]
    fn lists_every_invalid_field() {
        let errors = input("nope", "short", "").validate().unwrap_err().into_inner();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "password", "name"]);
        assert_eq!(errors[0].message, "must contain an @");
        assert_eq!(errors[1].message, "must be at least 10 characters long");
        assert_eq!(errors[2].message, "must contain at least one digit or symbol");
        assert_eq!(errors[3].message, "must not be empty");
    }

    #[test]
    fn missing_fields_are_reported_as_field_errors() {
        let parsed: RegistrationInput = serde_json::from_str("{}").unwrap();
        let errors = parsed.validate().unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"email") && fields.contains(&"password") && fields.contains(&"name"));
    }

    #[test]
    fn rejects_password_equal_to_the_email() {
        let errors = input("ada1@example.com", "Ada1@Example.com", "Ada").validate().unwrap_err();
        assert_eq!(errors.errors(), &[FieldError::new("password", "must not be the same as the email")]);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", input("ada@example.com", "correct-horse-42", "Ada"));
        assert!(!shown.contains("correct-horse-42"), "{shown}");
    }

    #[test]
    fn openapi_schema_marks_every_field_required() {
        let schema = serde_json::to_value(<RegistrationInput as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["email", "password", "name"]));
    }

    #[test]
    fn field_errors_serialise_as_field_and_message() {
        assert_eq!(
            serde_json::to_value(FieldError::new("email", "must contain an @")).unwrap(),
            serde_json::json!({"field": "email", "message": "must contain an @"})
        );
    }
}
