//! The PostgreSQL fixture against the real server binaries.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use sqlx::Connection as _;

#[tokio::test]
async fn postgres_starts_creates_databases_and_goes_away_on_drop() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    assert!(pg.url("shop").starts_with("postgres://bazaar@127.0.0.1:"));
    assert!(pg.url("shop").ends_with("/shop"));

    let url = pg.create_database("bazaar_catalog").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(url, pg.url("bazaar_catalog"));
    // Creating it again is fine: every service start does.
    pg.create_database("bazaar_catalog").await.unwrap_or_else(|e| panic!("{e}"));

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one, 1);

    let dir = pg.dir().to_path_buf();
    let port = pg.port();
    // A connection still open must not hold up the shutdown.
    drop(pg);
    assert!(!dir.exists(), "the cluster's files are removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server is gone");
    drop(conn);
}

#[tokio::test]
async fn two_servers_run_side_by_side() {
    let Some(a) = testkit::postgres_or_skip().await else { return };
    let Some(b) = testkit::postgres_or_skip().await else { return };
    assert_ne!(a.port(), b.port());
}
