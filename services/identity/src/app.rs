//! Identity's commands and queries. Commands (register, sign in, ensure the
//! admin) go through the `User` aggregate and the write side; the query
//! (`me`) reads the profile projection only.
//!
//! Password hashing is CPU-heavy, so it runs on tokio's blocking pool behind a
//! semaphore: a flood of sign-ins queues there instead of starving the
//! async workers that serve everything else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chassis::problem::FieldError;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::domain::{Email, Password, PasswordHash, RegisterUser, RegistrationInput, Role, SignInKey, User, UserId};
use crate::keys::{ACCESS_TOKEN_TTL, AccessClaims, KeyRing};
use crate::password;
use crate::store::{AttemptOutcome, Profile, SqlUserStore, StoreError, UserStore};

/// Failed sign-ins allowed per submitted email within [`LOGIN_WINDOW`]; the
/// next attempt gets 429. Attempts still being verified count as failed until
/// they succeed, so parallel guesses cannot get more than this many through,
/// and a success withdraws only its own attempt, so it does not forgive the
/// failures around it.
pub const MAX_LOGIN_FAILURES: u32 = 5;
/// The window over which failed sign-ins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Why an identity operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input breaks one or more rules.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The email belongs to another account.
    #[error("email is taken")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately the same error.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failed sign-ins for this email.
    #[error("too many failed sign-ins")]
    Throttled {
        /// Seconds until a sign-in is accepted again.
        retry_after_secs: u64,
    },
    /// No profile for the caller.
    #[error("no such user")]
    NotFound,
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => Self::EmailTaken,
            other => Self::Internal(other.to_string()),
        }
    }
}

/// A signed access token as the token endpoint returns it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenGrant {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// The identity application.
pub struct Identity<S = SqlUserStore> {
    store: S,
    keys: Arc<KeyRing>,
    hashing: Arc<Semaphore>,
}

impl<S: UserStore> Identity<S> {
    /// The application over `store`, signing with `keys`; at most
    /// `hashing_slots` password hashes run at once.
    pub fn new(store: S, keys: Arc<KeyRing>, hashing_slots: usize) -> Self {
        Self { store, keys, hashing: Arc::new(Semaphore::new(hashing_slots.max(1))) }
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// Runs CPU-heavy `work` on the blocking pool, at most `hashing_slots` at a time.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let _permit = self.hashing.acquire().await.map_err(|e| AppError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Signs up a customer.
    pub async fn register(&self, input: RegistrationInput) -> Result<Profile, AppError> {
        let valid = input.validate().map_err(|errors| AppError::Invalid(errors.into_inner()))?;
        let id = self.create_user(valid.email, valid.name, valid.password, vec![Role::Customer], false).await?;
        self.me(id).await
    }

    async fn create_user(
        &self,
        email: Email,
        name: crate::domain::DisplayName,
        password: Password,
        roles: Vec<Role>,
        seeded: bool,
    ) -> Result<UserId, AppError> {
        let hash = self
            .blocking(move || password::hash_password(&password))
            .await?
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let command = RegisterUser { email, name, password_hash: hash, roles };
        let now = OffsetDateTime::now_utc();
        let (user, event) = if seeded { User::register_seeded(command, now) } else { User::register(command, now) };
        self.store.register(&user, &event).await?;
        tracing::info!(user_id = %user.id(), event = event.message_type(), "user registered");
        Ok(user.id())
    }

    /// Signs a user in and issues an access token.
    ///
    /// Throttled per submitted string, so unknown and known emails count
    /// alike: the attempt is recorded (or refused) before the password is
    /// checked, and withdrawn only if it succeeds; other attempts for the email,
    /// failed or still being checked, stay counted. A string that is no valid
    /// address (a NUL byte, 300 characters) is simply an unknown account.
    pub async fn sign_in(&self, email: &str, password: String) -> Result<TokenGrant, AppError> {
        let key = SignInKey::for_submitted_email(email);
        let now = OffsetDateTime::now_utc();
        let attempt = match self.store.try_begin_attempt(&key, now, LOGIN_WINDOW, MAX_LOGIN_FAILURES).await? {
            AttemptOutcome::Allowed(attempt) => attempt,
            AttemptOutcome::Throttled { retry_after_secs } => return Err(AppError::Throttled { retry_after_secs }),
        };
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let verified = match &user {
            Some(user) => {
                let hash: PasswordHash = user.password_hash().clone();
                self.blocking(move || password::verify_password(&password, &hash)).await?
            }
            None => {
                // Spend the same time as a real verification so timing does not reveal which emails exist.
                self.blocking(move || password::dummy_verify(&password)).await?;
                false
            }
        };
        // A failure leaves its attempt recorded: that is what the throttle counts.
        let Some(user) = user.filter(|_| verified) else { return Err(AppError::InvalidCredentials) };
        self.store.withdraw_attempt(attempt).await?;
        let claims = AccessClaims::new(user.id(), user.roles(), OffsetDateTime::now_utc(), ACCESS_TOKEN_TTL);
        let token = self.keys.issue(&claims).map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(TokenGrant { access_token: token, token_type: "Bearer", expires_in: ACCESS_TOKEN_TTL.as_secs() })
    }

    /// The caller's profile (read model).
    pub async fn me(&self, id: UserId) -> Result<Profile, AppError> {
        self.store.profile(id).await?.ok_or(AppError::NotFound)
    }

    /// Creates the admin account named in `credentials_file`
    /// (`{"email": ..., "password": ...}`) if it does not exist yet.
    pub async fn ensure_admin(&self, credentials_file: &Path) -> Result<(), AppError> {
        #[derive(serde::Deserialize)]
        struct Credentials {
            email: String,
            password: String,
        }
        let text = std::fs::read_to_string(credentials_file)
            .map_err(|e| AppError::Internal(format!("reading {}: {e}", credentials_file.display())))?;
        let creds: Credentials = serde_json::from_str(&text)
            .map_err(|e| AppError::Internal(format!("{} is not valid: {e}", credentials_file.display())))?;
        let email = Email::parse(&creds.email).map_err(|e| AppError::Internal(format!("admin email: {e}")))?;
        if self.store.user_by_email(&email).await?.is_some() {
            return Ok(());
        }
        let password =
            Password::parse(&creds.password).map_err(|e| AppError::Internal(format!("admin password: {e}")))?;
        let name = crate::domain::DisplayName::parse("Administrator").map_err(|e| AppError::Internal(e.to_string()))?;
        match self.create_user(email, name, password, vec![Role::Admin, Role::Customer], true).await {
            // Two replicas starting together may both try; the loser finds it done.
            Ok(_) | Err(AppError::EmailTaken) => Ok(()),
            Err(other) => Err(other),
        }
    }
}
