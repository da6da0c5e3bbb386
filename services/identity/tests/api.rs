//! Identity's HTTP API on a real socket and a real SQLite file: sign-up,
//! sign-in, the profile, the JWKS, and the bad inputs a client can send.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use chassis::server::Shutdown;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Running {
    base: String,
    client: reqwest::Client,
    _service: testkit::RunningService,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    start_on(String::new()).await
}

/// The service on the database at `url`; empty means its own SQLite file.
async fn start_on(url: String) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = identity::Config::default();
    config.database.url = url;
    let service = identity::build(&config, dir.path()).await.expect("identity builds");
    let service = testkit::RunningService::start("identity", service).await;
    Running { base: service.base_url().to_owned(), client: reqwest::Client::new(), _service: service, _dir: dir }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, email: &str) -> (StatusCode, Value) {
        self.post("/api/v1/users", json!({"email": email, "password": "correct-horse-42", "name": "Ada"})).await
    }

    async fn sign_in(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post("/api/v1/auth/token", json!({"email": email, "password": password})).await
    }
}

#[tokio::test]
async fn sign_up_then_sign_in_gives_a_bearer_token_and_a_profile() {
    let api = start().await;
    let (status, user) = api.register("Ada@Example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["roles"], json!(["customer"]));
    assert!(user.get("password_hash").is_none());

    let (status, grant) = api.sign_in("ada@example.com", "correct-horse-42").await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["token_type"], "Bearer");
    assert_eq!(grant["expires_in"], 900);
    assert_eq!(grant["access_token"].as_str().map(|t| t.split('.').count()), Some(3));

    let me: Value = api
        .client
        .get(format!("{}/api/v1/users/me", api.base))
        .header("x-user-id", user["id"].as_str().expect("id"))
        .header("x-user-roles", "customer")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["id"], user["id"]);
}

#[tokio::test]
async fn bad_sign_ups_name_every_bad_field() {
    let api = start().await;
    let (status, problem) =
        api.post("/api/v1/users", json!({"email": "no-at-sign", "password": "short", "name": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    for field in ["email", "password", "name"] {
        assert!(fields.contains(&field), "{field} missing from {problem}");
    }
    assert_eq!(problem["status"], 422);

    let (status, _) = api.register("grace@example.com").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = api.register("GRACE@example.com").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "email_taken");

    for (email, name, field) in
        [("nul\u{0}@example.com", "Ada", "email"), ("nul@example.com", "Ada\u{0}Lovelace", "name")]
    {
        let (status, problem) =
            api.post("/api/v1/users", json!({"email": email, "password": "correct-horse-42", "name": name})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    let response = api
        .client
        .post(format!("{}/api/v1/users", api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let api = start().await;
    api.register("ada@example.com").await;
    let (wrong_status, wrong) = api.sign_in("ada@example.com", "not-the-password-1").await;
    let (unknown_status, unknown) = api.sign_in("nobody@example.com", "not-the-password-1").await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    for key in ["type", "title", "status", "detail", "code"] {
        assert_eq!(wrong[key], unknown[key], "{key} differs");
    }
}

#[tokio::test]
async fn sixth_failed_sign_in_for_an_email_is_throttled_whether_or_not_it_exists() {
    let api = start().await;
    api.register("ada@example.com").await;
    for email in ["ada@example.com", "ghost@example.com"] {
        for attempt in 1..=5 {
            let (status, _) = api.sign_in(email, "wrong-password-9").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt} for {email}");
        }
        let response = api
            .client
            .post(format!("{}/api/v1/auth/token", api.base))
            .json(&json!({"email": email, "password": "correct-horse-42"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert!(response.headers().contains_key("retry-after"));
    }
    let (status, _) = api.sign_in("other@example.com", "wrong-password-9").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "other emails are not affected");
}

#[tokio::test]
async fn parallel_wrong_passwords_for_one_email_get_at_most_five_401s() {
    let api = start().await;
    api.register("ada@example.com").await;
    let attempts = (0..20).map(|_| api.sign_in("ada@example.com", "wrong-password-9"));
    let statuses: Vec<StatusCode> = join_all(attempts).await.into_iter().map(|(status, _)| status).collect();
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(unauthorized <= 5, "{unauthorized} failures got through: {statuses:?}");
    assert_eq!(unauthorized + throttled, 20, "{statuses:?}");
}

#[tokio::test]
async fn a_successful_sign_in_does_not_forgive_the_failures_around_it() {
    let api = start().await;
    api.register("ada@example.com").await;
    for attempt in 1..=4 {
        let (status, _) = api.sign_in("ada@example.com", "wrong-password-9").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {attempt}");
    }
    let (status, grant) = api.sign_in("ada@example.com", "correct-horse-42").await;
    assert_eq!(status, StatusCode::OK, "four failures leave room for the right password: {grant}");
    let (status, _) = api.sign_in("ada@example.com", "wrong-password-9").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the fifth failure is still checked");
    // Five failures in the window: the success between them withdrew only its own attempt.
    let (status, problem) = api.sign_in("ada@example.com", "correct-horse-42").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits: {problem}");
    let (status, _) = api.sign_in("ada@example.com", "wrong-password-9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_success_among_parallel_guesses_leaves_their_attempts_counted() {
    let api = start().await;
    api.register("ada@example.com").await;
    // Four guesses and the owner's sign-in at once: all five fit in the window,
    // and the guesses are recorded while the owner's password is being checked.
    let guesses = (0..4).map(|_| api.sign_in("ada@example.com", "wrong-password-9"));
    let ((success, grant), guessed) =
        tokio::join!(api.sign_in("ada@example.com", "correct-horse-42"), join_all(guesses));
    assert_eq!(success, StatusCode::OK, "{grant}");
    for (status, problem) in &guessed {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{problem}");
    }
    // The success withdrew its own attempt only: the four failures stay, so
    // one more failure fills the window.
    let (status, _) = api.sign_in("ada@example.com", "wrong-password-9").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the fifth failure");
    let (status, _) = api.sign_in("ada@example.com", "wrong-password-9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the parallel failures were wiped by the success");
}

/// Sign-ins with emails no account can have: a NUL byte, 300 characters, a
/// megabyte-sized string. Each is an ordinary unknown account.
async fn unusable_emails_are_unknown_accounts(api: &Running) {
    let long = format!("{}@example.com", "a".repeat(288));
    let huge = "b".repeat(512 * 1024);
    for email in ["a\u{0}@example.com", "\u{0}", long.as_str(), "ada\n@example.com", huge.as_str()] {
        let (status, problem) = api.sign_in(email, "wrong-password-9").await;
        let shown: String = email.chars().take(40).collect();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{shown:?}: {problem}");
    }
    for _ in 0..4 {
        api.sign_in("a\u{0}@example.com", "wrong-password-9").await;
    }
    let (status, _) = api.sign_in("A\u{0}@Example.com ", "wrong-password-9").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "such emails are counted, normalised like any other");
}

#[tokio::test]
async fn unusable_emails_are_unknown_accounts_on_sqlite() {
    unusable_emails_are_unknown_accounts(&start().await).await;
}

#[tokio::test]
async fn unusable_emails_are_unknown_accounts_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let url = pg.create_database("identity_api").await.expect("database");
    unusable_emails_are_unknown_accounts(&start_on(url).await).await;
}

#[tokio::test]
async fn jwks_publishes_one_ed25519_key_that_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kids = Vec::new();
    for _ in 0..2 {
        let service = identity::build(&identity::Config::default(), dir.path()).await.expect("builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (trigger, shutdown) = Shutdown::new();
        let running = chassis::task::spawn("identity", service.run(listener, shutdown));
        let jwks: Value = reqwest::get(format!("http://{addr}/.well-known/jwks.json"))
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        kids.push(jwks["keys"][0]["kid"].clone());
        trigger.trigger();
        running.await.expect("stops cleanly");
    }
    assert_eq!(kids[0], kids[1]);
}
