//! Identity's HTTP API: sign-up, sign-in (token), the caller's profile, and
//! the public keys (JWKS) the gateway verifies tokens with.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chassis::extract::{Caller, Json};
use chassis::problem::{FieldError, Problem};
use serde::Deserialize;

use crate::app::{AppError, Identity, TokenGrant};
use crate::domain::{RegistrationInput, UserId};
use crate::store::Profile;

/// What the handlers share.
pub type ApiState = Arc<Identity>;

/// Identity's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/users", post(register))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/auth/token", post(token))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Invalid(errors) => Problem::validation(errors),
            AppError::EmailTaken => Problem::conflict("email_taken", "An account with this email already exists."),
            AppError::InvalidCredentials => Problem::unauthorized("The email or password is wrong."),
            AppError::Throttled { retry_after_secs } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sign_in_attempts",
                format!("Too many failed sign-ins for this email; try again in {retry_after_secs} s."),
            )
            .with_retry_after(retry_after_secs),
            AppError::NotFound => Problem::not_found("No account for this token's user."),
            AppError::Internal(cause) => Problem::internal(&cause),
        }
        .into_response()
    }
}

/// Sign up as a customer.
#[utoipa::path(post, path = "/api/v1/users", tag = "identity", request_body = RegistrationInput,
    responses((status = 201, description = "The new account", body = Profile),
              (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Invalid email, weak password or bad name", body = Problem, content_type = "application/problem+json")))]
async fn register(
    State(identity): State<ApiState>,
    Json(input): Json<RegistrationInput>,
) -> Result<Response, AppError> {
    let profile = identity.register(input).await?;
    let mut response = (StatusCode::CREATED, Json(profile)).into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/api/v1/users/me"));
    Ok(response)
}

/// The body of a sign-in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// The sign-in address.
    #[serde(default)]
    pub email: String,
    /// The password.
    #[serde(default)]
    pub password: String,
}

/// Sign in: exchange email and password for an access token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "identity", request_body = TokenRequest,
    responses((status = 200, description = "An access token", body = TokenGrant),
              (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Email or password missing", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "Too many failed sign-ins for this email", body = Problem, content_type = "application/problem+json")))]
async fn token(State(identity): State<ApiState>, Json(request): Json<TokenRequest>) -> Result<Response, AppError> {
    let mut missing = Vec::new();
    if request.email.trim().is_empty() {
        missing.push(FieldError::new("email", "is required"));
    }
    if request.password.is_empty() {
        missing.push(FieldError::new("password", "is required"));
    }
    if !missing.is_empty() {
        return Err(AppError::Invalid(missing));
    }
    let grant = identity.sign_in(&request.email, request.password).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(grant)).into_response())
}

/// The caller's own profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "identity", security(("bearer" = [])),
    responses((status = 200, description = "The caller's profile", body = Profile),
              (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json")))]
async fn me(State(identity): State<ApiState>, caller: Caller) -> Result<Json<Profile>, AppError> {
    Ok(Json(identity.me(UserId::from_uuid(caller.user_id)).await?))
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "A JSON Web Key Set", body = Object)))]
async fn jwks(State(identity): State<ApiState>) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(identity.jwks())).into_response()
}

/// Identity's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "bazaar identity", description = "Accounts, sign-in and signing keys."),
    paths(register, token, me, jwks),
    components(schemas(RegistrationInput, TokenRequest, TokenGrant, Profile, Problem, FieldError)),
    tags((name = "identity", description = "Accounts and tokens"))
)]
pub struct ApiDoc;
