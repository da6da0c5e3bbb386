//! Request extractors whose rejections are problem documents, and the
//! caller's identity as the gateway forwards it.
//!
//! Services sit behind the gateway on loopback; the gateway verifies the
//! access token, strips any `X-User-*` header a client sent, and sets
//! `X-User-Id` and `X-User-Roles`. Services trust those two headers.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::problem::{FieldError, Problem};

/// The header carrying the verified user id.
pub const USER_ID_HEADER: &str = "x-user-id";
/// The header carrying the verified roles, comma-separated.
pub const USER_ROLES_HEADER: &str = "x-user-roles";
/// The `iss` of every access token: the identity service issues them.
pub const TOKEN_ISSUER: &str = "bazaar-identity";
/// The `aud` of every access token: the platform behind the gateway.
pub const TOKEN_AUDIENCE: &str = "bazaar";
/// The role of shop administrators.
pub const ROLE_ADMIN: &str = "admin";
/// The role of shoppers.
pub const ROLE_CUSTOMER: &str = "customer";

/// A JSON body; a bad body becomes a 400, 413, 415 or 422 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as application/json.",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "The request body is too large.")
            } else {
                Problem::bad_request("unreadable_body", "The request body could not be read.")
            }
        })?;
        // Every bazaar request body is a JSON object; serde would otherwise read
        // a struct from an array and report confusing per-field errors.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Ok(_) => Problem::validation(vec![FieldError::new("body", "must be a JSON object")]),
                Err(_) => Problem::bad_request("malformed_json", "The body is not valid JSON."),
            });
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `+json`).
fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            // serde's message reads "Failed to deserialize the JSON body into the target type: <path>: <why>".
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, rest)| rest);
            // Where in the text the error sits means nothing to a client that sent an object.
            let detail = detail.split(" at line ").next().unwrap_or(detail).to_owned();
            let (field, message) = match detail.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => (field.to_owned(), message.to_owned()),
                _ => ("body".to_owned(), detail.clone()),
            };
            Problem::validation(vec![FieldError::new(field, message)])
        }
        // The content type and the body's size were checked before parsing.
        _ => Problem::bad_request("malformed_json", "The body is not valid JSON."),
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters; bad ones become a 422 problem naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, rest)| rest).to_owned();
                Err(Problem::validation(vec![FieldError::new("query", detail)]))
            }
            Err(_) => Err(Problem::bad_request("bad_query", "The query string could not be read.")),
        }
    }
}

/// The verified caller, as forwarded by the gateway. Rejects with 401 when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Ok when the caller is an admin, else a 403 problem.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.has_role(ROLE_ADMIN) { Ok(()) } else { Err(Problem::forbidden("This operation needs the admin role.")) }
    }

    fn from_parts(parts: &Parts) -> Option<Self> {
        let user_id = parts.headers.get(USER_ID_HEADER)?.to_str().ok()?.parse().ok()?;
        let roles = parts
            .headers
            .get(USER_ROLES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        Some(Self { user_id, roles })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts).ok_or_else(|| Problem::unauthorized("Sign in to use this operation."))
    }
}

/// The caller when there is one; anonymous requests get `None`.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Caller::from_parts(parts)))
    }
}
