//! The user aggregate: who a user is, what they may do, and the event that
//! records their arrival.
//!
//! Commands are plain functions from the current state and the clock to the new
//! state plus the events they raise, so the store can write both in one
//! transaction (today the event feeds the profile read model; it is also what
//! the bus will carry) and tests need no database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DisplayName, Email, PasswordHash, Role};

/// The UUIDv5 namespace of ids derived from seeded accounts' emails. It is itself
/// the UUIDv5 of `https://bazaar.example/identity/users` in the URL namespace and
/// must never change: orders and notifications in other services refer to the
/// seeded users by these ids.
pub const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0xb62a_9cb3_449b_508e_ba5a_26be_b639_c2fa);

/// The message type of [`UserRegistered`] on the bus.
pub const USER_REGISTERED_V1: &str = "identity.user-registered.v1";

/// A user's id: a UUIDv7 for users who sign up (time-ordered, so index inserts
/// stay local), a UUIDv5 of the email for seeded accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// A fresh, time-ordered id for a new user.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The deterministic id of a seeded account, so that every fresh start on
    /// every machine gives the seeded admin (and demo users) the same id.
    pub fn for_seeded_email(email: &Email) -> Self {
        Self(Uuid::new_v5(&USER_ID_NAMESPACE, email.as_str().as_bytes()))
    }

    /// Wraps an id read from the store or a token.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for UserId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

impl From<UserId> for Uuid {
    fn from(id: UserId) -> Self {
        id.0
    }
}

/// The command to create an account. The password is already hashed: hashing is
/// slow work that belongs on the blocking pool, not in the domain.
#[derive(Debug, Clone)]
pub struct RegisterUser {
    /// The sign-in address (uniqueness is the store's to enforce).
    pub email: Email,
    /// The name the user is shown by.
    pub name: DisplayName,
    /// The hash of the chosen password.
    pub password_hash: PasswordHash,
    /// The roles granted; an empty list means [`Role::Customer`].
    pub roles: Vec<Role>,
}

/// A registered user, as the write side holds it.
///
/// Not `Serialize`: it carries the password hash. Responses are built from the
/// accessors, which leave the hash out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    id: UserId,
    email: Email,
    name: DisplayName,
    password_hash: PasswordHash,
    roles: Vec<Role>,
    created_at: OffsetDateTime,
}

/// Something that happened to a user: applied to the read model, and the
/// message the bus will carry.
///
/// Serialising an event gives its message data (the variant's fields only);
/// [`UserEvent::message_type`] gives the type to put on the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum UserEvent {
    /// A new account was created.
    Registered(UserRegistered),
}

/// The data of `identity.user-registered.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The new user's id.
    pub user_id: UserId,
    /// Their sign-in address.
    pub email: Email,
    /// Their display name.
    pub name: DisplayName,
}

impl UserEvent {
    /// The versioned message type of this event.
    pub const fn message_type(&self) -> &'static str {
        match self {
            UserEvent::Registered(_) => USER_REGISTERED_V1,
        }
    }

    /// The user the event is about, which is also its ordering key on the bus.
    pub const fn user_id(&self) -> UserId {
        match self {
            UserEvent::Registered(registered) => registered.user_id,
        }
    }
}

impl User {
    /// Creates an account for someone signing up, with a fresh UUIDv7 id.
    pub fn register(command: RegisterUser, now: OffsetDateTime) -> (User, UserEvent) {
        Self::register_with_id(UserId::new(), command, now)
    }

    /// Creates a seeded account (the admin made on first start, demo users), whose
    /// id is derived from the email so it is the same on every fresh start.
    pub fn register_seeded(command: RegisterUser, now: OffsetDateTime) -> (User, UserEvent) {
        let id = UserId::for_seeded_email(&command.email);
        Self::register_with_id(id, command, now)
    }

    fn register_with_id(id: UserId, command: RegisterUser, now: OffsetDateTime) -> (User, UserEvent) {
        let user = User {
            id,
            email: command.email,
            name: command.name,
            password_hash: command.password_hash,
            roles: normalise_roles(command.roles),
            created_at: to_storage_precision(now),
        };
        let event = UserEvent::Registered(UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
        });
        (user, event)
    }

    /// Rebuilds a user read back from the store.
    pub fn restore(
        id: UserId,
        email: Email,
        name: DisplayName,
        password_hash: PasswordHash,
        roles: Vec<Role>,
        created_at: OffsetDateTime,
    ) -> User {
        User { id, email, name, password_hash, roles: normalise_roles(roles), created_at }
    }

    /// The user's id.
    pub fn id(&self) -> UserId {
        self.id
    }

    /// The sign-in address.
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// The display name.
    pub fn name(&self) -> &DisplayName {
        &self.name
    }

    /// The stored password hash, for verifying a login.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// The granted roles, sorted, without duplicates, never empty.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// When the account was created (UTC, microsecond precision).
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

/// Sorts and deduplicates so that equal role sets compare and store alike, and
/// makes every account at least a customer.
fn normalise_roles(mut roles: Vec<Role>) -> Vec<Role> {
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        roles.push(Role::Customer);
    }
    roles
}

/// Cuts the clock to UTC microseconds, the finest both SQLite text timestamps
/// and PostgreSQL `timestamptz` keep, so a user read back equals the one written.
fn to_storage_precision(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(utc.nanosecond() / 1_000 * 1_000).unwrap_or(utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn command(roles: Vec<Role>) -> RegisterUser {
        RegisterUser {
            email: Email::parse("Ada@Example.com").unwrap(),
            name: DisplayName::parse("Ada Lovelace").unwrap(),
            password_hash: PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap(),
            roles,
        }
    }

    #[test]
    fn user_id_namespace_is_derived_from_the_identity_url() {
        let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://bazaar.example/identity/users");
        assert_eq!(USER_ID_NAMESPACE, derived);
    }

    #[test]
    fn registering_creates_a_customer_with_a_v7_id_and_emits_registered() {
        let now = datetime!(2025-03-01 12:00:00.123456789 UTC);
        let (user, event) = User::register(command(vec![]), now);

        assert_eq!(user.id().as_uuid().get_version_num(), 7);
        assert_eq!(user.email().as_str(), "ada@example.com");
        assert_eq!(user.roles(), &[Role::Customer]);
        assert_eq!(user.created_at(), datetime!(2025-03-01 12:00:00.123456 UTC));
        assert_eq!(event.message_type(), "identity.user-registered.v1");
        assert_eq!(event.user_id(), user.id());
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "user_id": user.id().to_string(),
                "email": "ada@example.com",
                "name": "Ada Lovelace",
            })
        );
    }

    #[test]
    fn seeded_accounts_get_the_same_id_every_time() {
        let now = datetime!(2025-03-01 12:00 UTC);
        let (first, _) = User::register_seeded(command(vec![Role::Admin]), now);
        let (second, _) = User::register_seeded(command(vec![Role::Admin]), now);
        assert_eq!(first.id(), second.id());
        assert_eq!(first.id().as_uuid().get_version_num(), 5);
        assert_eq!(first.id(), UserId::for_seeded_email(first.email()));
    }

    #[test]
    fn roles_are_sorted_and_deduplicated() {
        let (user, _) =
            User::register(command(vec![Role::Admin, Role::Customer, Role::Admin]), datetime!(2025-03-01 12:00 UTC));
        assert_eq!(user.roles(), &[Role::Customer, Role::Admin]);
        assert!(user.has_role(Role::Admin));
    }

    #[test]
    fn user_ids_print_and_parse_as_plain_uuids() {
        let id = UserId::new();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(id.to_string()));
    }

    #[test]
    fn created_at_is_kept_in_utc() {
        let now = datetime!(2025-03-01 14:00 +02:00);
        let (user, _) = User::register(command(vec![]), now);
        assert_eq!(user.created_at().offset(), time::UtcOffset::UTC);
        assert_eq!(user.created_at(), now);
    }
}
