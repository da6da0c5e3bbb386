//! Identity's domain, the write side of the user service: the values a user is
//! made of, the rules that make them valid, the user aggregate and its events.
//! Nothing here does I/O or slow work; hashing lives in [`crate::password`] and
//! the store, the application layer and the HTTP handlers build on these types.
//!
//! Every value type is a newtype whose constructor validates (and, where it says
//! so, normalises) its input, and whose serde `Deserialize`, where it has one,
//! goes through that same constructor. Types that hold secrets (the plain
//! [`Password`], the [`PasswordHash`]) print as `***` and cannot be serialised.

mod email;
mod name;
mod password;
mod registration;
mod role;
mod sign_in;
mod user;

pub use email::{Email, EmailError};
pub use name::{DisplayName, DisplayNameError};
pub use password::{InvalidPasswordHash, Password, PasswordError, PasswordHash};
pub use registration::{FieldError, RegistrationInput, ValidRegistration, ValidationErrors};
pub use role::{Role, UnknownRole};
pub use sign_in::{AttemptId, SIGN_IN_KEY_NAMESPACE, SignInKey};
pub use user::{RegisterUser, USER_ID_NAMESPACE, USER_REGISTERED_V1, User, UserEvent, UserId, UserRegistered};
