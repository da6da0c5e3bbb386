//! RFC 9457 problem details: the one shape of every 4xx and 5xx response.
//!
//! Services map their own error enums to a [`Problem`] in one `IntoResponse`
//! impl each. A problem never carries internal error text: the cause is logged
//! with the request's trace id, and the client gets that id to quote.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::trace;

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

tokio::task_local! {
    /// The URI of the request being handled, so every problem names its `instance`.
    static REQUEST_URI: axum::http::Uri;
}

/// Runs `fut` (a request's handling) with `uri`'s path as the `instance` of any problem it makes.
pub async fn scope_instance<F: Future>(uri: axum::http::Uri, fut: F) -> F::Output {
    REQUEST_URI.scope(uri, fut).await
}

/// One invalid field of a request body or query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's JSON name, with dots for nesting (`price.amount`).
    pub field: String,
    /// What is wrong with it, in words a client can show.
    pub message: String,
}

impl FieldError {
    /// A field error from a field name and a message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` style tags under bazaar's namespace.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words a client can act on.
    pub detail: String,
    /// The request path the problem occurred on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The trace id of the request, to find its log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// A stable, machine-readable code (`email_taken`, `stale_etag`).
    pub code: String,
    /// Every invalid field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds after which the client may retry (sent as `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a status, a stable code and a detail message.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://bazaar.dev/problems/{}", code.replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: REQUEST_URI.try_with(|uri| uri.path().to_owned()).ok(),
            trace_id: trace::current().map(|t| t.trace_id_hex()),
            code: code.to_owned(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 400: the request could not be read at all.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: valid credentials without the needed role.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404: nothing at this address (or nothing this caller may see).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 422: the request was read but its content is invalid; lists every bad field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let mut problem = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail);
        problem.errors = errors;
        problem
    }

    /// 500: something failed inside. `cause` is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The service failed to handle the request; quote the trace_id when reporting it.",
        )
    }

    /// 503: a dependency or a pool is unavailable right now.
    pub fn unavailable(code: &str, detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut problem = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail);
        problem.retry_after = Some(retry_after_secs);
        problem
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The HTTP status of this problem.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A problem for a path no route matches; the fallback of every router.
pub async fn route_not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("No resource at {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_lists_every_field_and_names_one_in_detail() {
        let one = Problem::validation(vec![FieldError::new("email", "must contain @")]);
        assert_eq!(one.status, 422);
        assert_eq!(one.detail, "email: must contain @");
        let two = Problem::validation(vec![
            FieldError::new("email", "must contain @"),
            FieldError::new("password", "too short"),
        ]);
        assert_eq!(two.errors.len(), 2);
        assert_eq!(two.detail, "2 fields are invalid");
    }

    #[test]
    fn internal_problem_hides_the_cause() {
        let problem = Problem::internal(&"database is locked: table users");
        let body = serde_json::to_string(&problem).unwrap_or_default();
        assert!(!body.contains("database is locked"));
        assert_eq!(problem.status, 500);
    }

    #[tokio::test]
    async fn problem_response_has_problem_media_type_and_retry_after() {
        let response = Problem::unavailable("busy", "try later", 3).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
