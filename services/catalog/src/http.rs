//! The catalog's HTTP API: product and category reads (public and cacheable),
//! and admin-only create and replace guarded by ETag / If-Match.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chassis::extract::{Caller, Json, Query};
use chassis::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::{AppError, Catalog};
use crate::domain::{CategorySlug, Cursor, Limit, Product, ProductInput};
use crate::store::{CategoryCount, ProductQuery};

/// The longest search text accepted.
const MAX_SEARCH_CHARS: usize = 200;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The application.
    pub catalog: Arc<Catalog>,
    /// `max-age` of cacheable reads, in seconds.
    pub cache_max_age_secs: u32,
}

/// The catalog's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/products", get(list_products).post(create_product))
        .route("/api/v1/products/{id}", get(get_product).put(replace_product))
        .route("/api/v1/categories", get(list_categories))
        .with_state(state)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Invalid(errors) => Problem::validation(errors),
            AppError::NotFound => Problem::not_found("No product with this id."),
            AppError::SkuTaken(sku) => {
                Problem::conflict("sku_taken", format!("Another product already has SKU {sku}."))
            }
            AppError::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "Send If-Match with the product's ETag from a GET, so a concurrent change is not overwritten.",
            ),
            AppError::Stale { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale_etag",
                format!("The product changed since that ETag; it is now at {}. GET it again.", etag(current)),
            ),
            AppError::Store(error) => Problem::internal(&error),
        }
        .into_response()
    }
}

/// A page of products.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductCollection {
    /// The products.
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The categories.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoryCollection {
    /// Every category with its product count.
    pub items: Vec<CategoryCount>,
}

/// Query parameters of the product collection (strings, so a bad one gets a named 422).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Words to search for in names, descriptions and attributes (prefix match, all words).
    pub q: Option<String>,
    /// A category slug.
    pub category: Option<String>,
    /// Page size, 1-100 (default 20).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    fn into_query(self) -> Result<ProductQuery, AppError> {
        let mut errors = Vec::new();
        let search = self.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
        if search.as_ref().is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
            errors.push(FieldError::new("q", format!("must be at most {MAX_SEARCH_CHARS} characters")));
        }
        let category = match self.category.filter(|c| !c.is_empty()) {
            Some(c) => {
                CategorySlug::parse(&c).map_err(|e| errors.push(FieldError::new("category", e.to_string()))).ok()
            }
            None => None,
        };
        let limit = match self.limit {
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .and_then(|n| Limit::new(n).ok())
                .ok_or_else(|| errors.push(FieldError::new("limit", "must be a whole number from 1 to 100")))
                .unwrap_or_default(),
            None => Limit::default(),
        };
        let after = match self.cursor.filter(|c| !c.is_empty()) {
            Some(c) => Cursor::decode(&c).map_err(|e| errors.push(FieldError::new("cursor", e.to_string()))).ok(),
            None => None,
        };
        if errors.is_empty() {
            Ok(ProductQuery { search, category, limit, after })
        } else {
            Err(AppError::Invalid(errors))
        }
    }
}

fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// The version an `If-Match` names, `None` when absent. `*` or an unparseable
/// tag matches nothing, so it fails as stale rather than overwriting blindly.
fn if_match_version(headers: &HeaderMap) -> Option<i64> {
    let raw = headers.get(header::IF_MATCH)?.to_str().unwrap_or("");
    let tag = raw.trim().trim_start_matches("W/").trim_matches('"');
    Some(tag.strip_prefix('v').and_then(|v| v.parse().ok()).unwrap_or(-1))
}

fn cache_control(max_age: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={max_age}, stale-if-error=300"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

fn with_etag(mut response: Response, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Search and browse products.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListParams),
    responses((status = 200, description = "A page of products", body = ProductCollection),
              (status = 422, description = "A bad parameter", body = Problem, content_type = "application/problem+json")))]
async fn list_products(State(state): State<ApiState>, Query(params): Query<ListParams>) -> Result<Response, AppError> {
    let query = params.into_query()?;
    let page = state.catalog.products(&query).await?;
    let body = ProductCollection { items: page.items, next_cursor: page.next.map(|c| c.encode()) };
    Ok(([(header::CACHE_CONTROL, cache_control(state.cache_max_age_secs))], Json(body)).into_response())
}

/// One product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "The product id")),
    responses((status = 200, description = "The product, with its ETag", body = Product),
              (status = 304, description = "Not modified since the ETag in If-None-Match"),
              (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json")))]
async fn get_product(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let product = state.catalog.product(id).await?;
    let cache = [(header::CACHE_CONTROL, cache_control(state.cache_max_age_secs))];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag(product.version)));
    let version = product.version;
    let response = if matches {
        (StatusCode::NOT_MODIFIED, cache).into_response()
    } else {
        (cache, Json(product)).into_response()
    };
    Ok(with_etag(response, version))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = ProductInput,
    security(("bearer" = [])),
    responses((status = 201, description = "Created, with ETag and Location", body = Product),
              (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "SKU taken", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Invalid product", body = Problem, content_type = "application/problem+json")))]
async fn create_product(
    State(state): State<ApiState>,
    caller: Caller,
    Json(input): Json<ProductInput>,
) -> Result<Response, Response> {
    caller.require_admin().map_err(IntoResponse::into_response)?;
    let product = state.catalog.create(input).await.map_err(IntoResponse::into_response)?;
    let location = format!("/api/v1/products/{}", product.id);
    let version = product.version;
    let mut response = (StatusCode::CREATED, Json(product)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(with_etag(response, version))
}

/// Replace a product (admin), guarded by If-Match.
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "catalog", request_body = ProductInput,
    params(("id" = Uuid, Path, description = "The product id"),
           ("If-Match" = String, Header, description = "The ETag from a GET")),
    security(("bearer" = [])),
    responses((status = 200, description = "Replaced, with the new ETag", body = Product),
              (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "SKU taken", body = Problem, content_type = "application/problem+json"),
              (status = 412, description = "Stale ETag", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Invalid product", body = Problem, content_type = "application/problem+json"),
              (status = 428, description = "No If-Match", body = Problem, content_type = "application/problem+json")))]
async fn replace_product(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(input): Json<ProductInput>,
) -> Result<Response, Response> {
    caller.require_admin().map_err(IntoResponse::into_response)?;
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound.into_response())?;
    let product =
        state.catalog.replace(id, if_match_version(&headers), input).await.map_err(IntoResponse::into_response)?;
    let version = product.version;
    Ok(with_etag(Json(product).into_response(), version))
}

/// The categories with product counts.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog",
    responses((status = 200, description = "Every category", body = CategoryCollection)))]
async fn list_categories(State(state): State<ApiState>) -> Result<Response, AppError> {
    let items = state.catalog.categories().await?;
    Ok(([(header::CACHE_CONTROL, cache_control(state.cache_max_age_secs))], Json(CategoryCollection { items }))
        .into_response())
}

/// The catalog's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "bazaar catalog", description = "Products and categories."),
    paths(list_products, get_product, create_product, replace_product, list_categories),
    components(schemas(Product, ProductInput, ProductCollection, CategoryCollection, CategoryCount, Problem, FieldError)),
    tags((name = "catalog", description = "Products and categories"))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_reads_strong_and_weak_tags_and_refuses_wildcards() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match_version(&headers), None);
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"v3\""));
        assert_eq!(if_match_version(&headers), Some(3));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"v4\""));
        assert_eq!(if_match_version(&headers), Some(4));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(if_match_version(&headers), Some(-1));
    }

    #[test]
    fn list_params_report_every_bad_parameter() {
        let params = ListParams {
            q: None,
            category: Some("Not A Slug!".into()),
            limit: Some("0".into()),
            cursor: Some("garbage".into()),
        };
        match params.into_query() {
            Err(AppError::Invalid(errors)) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["category", "limit", "cursor"]);
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}
