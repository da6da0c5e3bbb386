//! Serving a service's OpenAPI 3.1 document at `/openapi.json`, generated from
//! its code with utoipa so the description cannot drift from the handlers.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::OpenApi;

/// The `/openapi.json` route serving `doc`.
pub fn router(doc: OpenApi) -> Router {
    let body = serde_json::to_value(&doc).unwrap_or_default();
    Router::new().route("/openapi.json", get(move || std::future::ready(Json(body.clone()))))
}

/// Adds the problem response every operation can return to `doc`'s components,
/// so service documents can refer to `#/components/schemas/Problem`.
pub fn with_problem_schema(mut doc: OpenApi) -> OpenApi {
    use utoipa::PartialSchema as _;
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert("Problem".into(), crate::problem::Problem::schema());
    components.schemas.insert("FieldError".into(), crate::problem::FieldError::schema());
    doc
}
