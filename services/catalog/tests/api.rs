//! The catalog's HTTP API on a real socket and a real SQLite file: public
//! reads with caching headers, admin writes with ETag / If-Match, and the bad
//! inputs a client can send. The caller's identity is set the way the gateway
//! sets it (`X-User-Id`, `X-User-Roles`).

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "0190a6f0-0000-7000-8000-000000000001";
const CUSTOMER: &str = "0190a6f0-0000-7000-8000-000000000002";

struct Running {
    base: String,
    client: reqwest::Client,
    _service: testkit::RunningService,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = catalog::build(&catalog::Config::default(), dir.path()).await.expect("catalog builds");
    let service = testkit::RunningService::start("catalog", service).await;
    Running { base: service.base_url().to_owned(), client: reqwest::Client::new(), _service: service, _dir: dir }
}

impl Running {
    fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    fn as_user(&self, method: reqwest::Method, path: &str, id: &str, roles: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("x-user-id", id)
            .header("x-user-roles", roles)
    }
}

async fn json_of(request: RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

fn new_product(sku: &str) -> Value {
    json!({"sku": sku, "name": "Numbat Kettle", "description": "Copper, 1.5 l.",
           "price": {"amount": 4599, "currency": "USD"}, "category": "kitchen",
           "attributes": {"material": "copper"}, "image_url": null})
}

#[tokio::test]
async fn seeded_catalog_is_browsable_searchable_and_cacheable() {
    let api = start().await;
    let (status, headers, categories) = json_of(api.get("/api/v1/categories")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["cache-control"].to_str().unwrap_or("").contains("public"));
    assert_eq!(categories["items"].as_array().map(Vec::len), Some(8));
    assert_eq!(categories["items"][0], json!({"slug": "electronics", "name": "Electronics", "product_count": 30}));

    let (status, headers, page) = json_of(api.get("/api/v1/products?limit=5&category=books")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["cache-control"].to_str().unwrap_or("").contains("max-age="));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, _, next) = json_of(api.get(&format!("/api/v1/products?limit=5&category=books&cursor={cursor}"))).await;
    assert_ne!(next["items"][0]["sku"], page["items"][0]["sku"]);

    let word = page["items"][0]["name"].as_str().and_then(|n| n.split_whitespace().last()).expect("a name").to_owned();
    let (status, _, found) = json_of(api.get(&format!("/api/v1/products?q={word}&limit=100"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(found["items"].as_array().expect("items").iter().any(|p| p["sku"] == page["items"][0]["sku"]));
}

#[tokio::test]
async fn product_read_carries_an_etag_and_honours_if_none_match() {
    let api = start().await;
    let (_, _, page) = json_of(api.get("/api/v1/products?limit=1")).await;
    let id = page["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, headers, product) = json_of(api.get(&format!("/api/v1/products/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(product["version"], 1);
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let again = api.get(&format!("/api/v1/products/{id}")).header("if-none-match", &etag).send().await.expect("get");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let (status, _, problem) = json_of(api.get("/api/v1/products/0190a6f0-0000-7000-8000-00000000ffff")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_found");
    let (status, _, _) = json_of(api.get("/api/v1/products/not-a-uuid")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_list_parameters_get_a_422_naming_them() {
    let api = start().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
        ("category=Bad%20Slug!", "category"),
    ] {
        let (status, _, problem) = json_of(api.get(&format!("/api/v1/products?{query}"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}

#[tokio::test]
async fn only_admins_create_and_a_created_product_is_readable() {
    let api = start().await;
    let (status, _, _) =
        json_of(api.client.post(format!("{}/api/v1/products", api.base)).json(&new_product("NEW-0001"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, problem) = json_of(
        api.as_user(reqwest::Method::POST, "/api/v1/products", CUSTOMER, "customer").json(&new_product("NEW-0001")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["code"], "forbidden");

    let (status, headers, created) =
        json_of(api.as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin").json(&new_product("new-0001")))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["sku"], "NEW-0001");
    assert_eq!(headers["etag"], "\"v1\"");
    let location = headers["location"].to_str().expect("location").to_owned();
    let (status, _, read) = json_of(api.get(&location)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);

    let (status, _, problem) =
        json_of(api.as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin").json(&new_product("NEW-0001")))
            .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "sku_taken");

    let mut nul = new_product("NEW-0009");
    nul["attributes"] = json!({"colour": "te\u{0}al"});
    let (status, _, problem) =
        json_of(api.as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin").json(&nul)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "NUL never reaches the store: {problem}");
    assert_eq!(problem["errors"][0]["field"], "attributes");
    let (status, _, _) = json_of(api.get("/api/v1/products?q=%00kettle%00")).await;
    assert_eq!(status, StatusCode::OK, "a NUL in a search is just a word break");

    let mut bad = new_product("NEW-0002");
    bad["category"] = json!("spaceships");
    bad["price"]["amount"] = json!(-5);
    let (status, _, problem) =
        json_of(api.as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin").json(&bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "price.amount", "{problem}");
}

#[tokio::test]
async fn replace_needs_a_current_etag() {
    let api = start().await;
    let (_, headers, created) =
        json_of(api.as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin").json(&new_product("NEW-0003")))
            .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let path = format!("/api/v1/products/{id}");
    let mut body = created.clone();
    body["name"] = json!("Numbat Kettle Deluxe");

    let (status, _, _) = json_of(api.as_user(reqwest::Method::PUT, &path, ADMIN, "admin").json(&body)).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, headers, replaced) =
        json_of(api.as_user(reqwest::Method::PUT, &path, ADMIN, "admin").header("if-match", &etag).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["version"], 2);
    assert_eq!(headers["etag"], "\"v2\"");
    let (status, _, problem) =
        json_of(api.as_user(reqwest::Method::PUT, &path, ADMIN, "admin").header("if-match", &etag).json(&body)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(problem["code"], "stale_etag");
    let missing = "/api/v1/products/0190a6f0-0000-7000-8000-00000000ffff";
    let (status, _, _) =
        json_of(api.as_user(reqwest::Method::PUT, missing, ADMIN, "admin").header("if-match", "\"v1\"").json(&body))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_error_is_a_problem_document() {
    let api = start().await;
    let response = api.client.delete(format!("{}/api/v1/categories", api.base)).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let response = api.get("/no/such/thing").send().await.expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = api
        .as_user(reqwest::Method::POST, "/api/v1/products", ADMIN, "admin")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}
