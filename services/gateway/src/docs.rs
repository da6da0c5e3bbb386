//! The public API description: the gateway merges the OpenAPI documents of
//! the services behind it into one (`/api/v1/openapi.json`), keeping only the
//! paths its routing table exposes and adding the answers the edge itself can
//! give (401, 403, 413, 429, 502, 503, 504). Swagger UI at `/docs` reads it;
//! its assets are vendored into the binary, so nothing loads from the internet.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chassis::client::HttpClient;
use chassis::problem::Problem;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::proxy::Edge;
use crate::routing::RouteTable;

/// How long a merged document is reused before the services are asked again.
const REFRESH: Duration = Duration::from_secs(30);

/// The statuses the edge adds to every operation.
const EDGE_RESPONSES: [(&str, &str); 7] = [
    ("401", "Missing, malformed, expired or wrongly signed access token"),
    ("403", "The token's roles do not allow this operation"),
    ("413", "Request body too large"),
    ("429", "Rate limit exceeded; see Retry-After and RateLimit headers"),
    ("502", "The service behind this route could not be reached"),
    ("503", "No instance of the service is available"),
    ("504", "The service behind this route did not answer in time"),
];

/// The statuses every operation with a JSON body can also answer.
const BODY_RESPONSES: [(&str, &str); 2] =
    [("400", "The body is not valid JSON"), ("415", "The body was not sent as application/json")];

/// Builds and caches the merged document.
pub struct ApiDocs {
    edge: Arc<Edge>,
    client: HttpClient,
    cached: Mutex<Option<(Instant, Value)>>,
}

impl ApiDocs {
    /// Docs for the services the edge's routes expose, fetched from their instances.
    pub fn new(edge: Arc<Edge>) -> Self {
        Self { edge, client: HttpClient::new(Duration::from_secs(3)), cached: Mutex::new(None) }
    }

    /// The routes `/api/v1/openapi.json` and `/docs`.
    pub fn router(self: Arc<Self>) -> Router {
        let swagger =
            utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/api/v1/openapi.json"]));
        Router::new().route("/api/v1/openapi.json", get(openapi)).with_state(self).merge(swagger)
    }

    async fn document(&self) -> Value {
        let mut cached = self.cached.lock().await;
        if let Some((at, doc)) = cached.as_ref()
            && at.elapsed() < REFRESH
        {
            return doc.clone();
        }
        let services: BTreeSet<String> = self.edge.routes.routes().iter().map(|r| r.service().to_owned()).collect();
        let mut docs = Vec::new();
        for service in services {
            let Some(instance) = self.edge.upstreams.pick(&service, self.edge.clock.now()) else { continue };
            let url = format!("{}/openapi.json", instance.base_url());
            match self.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => {
                    if let Ok(doc) = response.json::<Value>().await {
                        docs.push(doc);
                    }
                }
                _ => tracing::warn!(service = %service, "could not fetch its OpenAPI document"),
            }
        }
        let merged = merge(&self.edge.routes, &docs);
        *cached = Some((Instant::now(), merged.clone()));
        merged
    }
}

async fn openapi(State(docs): State<Arc<ApiDocs>>) -> Response {
    let doc = docs.document().await;
    if doc["paths"].as_object().is_none_or(Map::is_empty) {
        return Problem::unavailable("docs_unavailable", "No service answered with its API description yet.", 2)
            .into_response();
    }
    axum::Json(doc).into_response()
}

/// Merges service documents into the public one.
pub fn merge(routes: &RouteTable, docs: &[Value]) -> Value {
    let mut paths = Map::new();
    // The edge's own problem answers refer to this schema, whichever services are up.
    let mut schemas = Map::from_iter([
        ("Problem".to_owned(), schema_of::<Problem>()),
        ("FieldError".to_owned(), schema_of::<chassis::problem::FieldError>()),
    ]);
    let mut tags = Vec::new();
    for doc in docs {
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            if routes.match_path(path).is_some() {
                paths.insert(path.clone(), with_edge_responses(item.clone()));
            }
        }
        for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
            schemas.insert(name.clone(), schema.clone());
        }
        tags.extend(doc["tags"].as_array().into_iter().flatten().cloned());
    }
    paths.insert(
        "/health".into(),
        json!({"get": {"tags": ["health"], "summary": "The gateway's health and every service's readiness",
            "responses": {"200": {"description": "Healthy or degraded"}, "503": {"description": "Unhealthy"}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "bazaar public API", "version": chassis::VERSION,
                 "description": "Everything a client can call through the gateway. Errors are RFC 9457 problem documents."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        },
        "tags": tags,
    })
}

fn schema_of<T: utoipa::PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

fn with_edge_responses(mut item: Value) -> Value {
    if let Some(operations) = item.as_object_mut() {
        for operation in operations.values_mut() {
            let takes_body = operation.get("requestBody").is_some();
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            let body_responses: &[(&str, &str)] = if takes_body { &BODY_RESPONSES } else { &[] };
            for &(status, description) in EDGE_RESPONSES.iter().chain(body_responses) {
                responses.entry(status).or_insert_with(|| {
                    json!({"description": description,
                           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
                });
            }
        }
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_routes;

    #[test]
    fn merged_document_keeps_routed_paths_and_adds_edge_statuses() {
        let routes = RouteTable::new(default_routes()).unwrap();
        let catalog = json!({
            "paths": {
                "/api/v1/products": {"get": {"responses": {"200": {"description": "ok"}}}},
                "/internal/only": {"get": {"responses": {"200": {"description": "ok"}}}}
            },
            "components": {"schemas": {"Product": {"type": "object"}}}
        });
        let merged = merge(&routes, &[catalog]);
        assert!(merged["paths"]["/internal/only"].is_null());
        let responses = &merged["paths"]["/api/v1/products"]["get"]["responses"];
        for status in ["200", "401", "403", "413", "429", "503"] {
            assert!(responses[status].is_object(), "missing {status}");
        }
        assert!(responses["415"].is_null(), "a GET takes no body");
        assert_eq!(merged["components"]["schemas"]["Product"]["type"], "object");
        assert!(merged["components"]["schemas"]["Problem"]["properties"]["status"].is_object());
    }
}
