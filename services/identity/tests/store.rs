//! The identity store contract, run on SQLite and on a real PostgreSQL server.
//! Each case gets a fresh, migrated database.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use chassis::db::Db;
use identity::domain::{DisplayName, Email, PasswordHash, RegisterUser, Role, User, UserId};
use identity::store::{SqlUserStore, StoreError, UserStore};
use time::OffsetDateTime;

/// A hash in PHC form; the store never interprets it.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Yqw9MOTfO4mH6Ekqz0s6B3v8CE5t1oFdpCzn0Vd1lE";

async fn store(db: Db) -> SqlUserStore {
    identity::store::migrate(&db).await.expect("migrations apply");
    SqlUserStore::new(db)
}

fn new_user(email: &str, roles: Vec<Role>) -> (User, identity::domain::UserEvent) {
    let command = RegisterUser {
        email: Email::parse(email).expect("email"),
        name: DisplayName::parse("Ada Lovelace").expect("name"),
        password_hash: PasswordHash::from_phc(HASH).expect("hash"),
        roles,
    };
    User::register(command, OffsetDateTime::now_utc())
}

async fn registered_user_reads_back_equal_on_both_sides(store: SqlUserStore) {
    let (user, event) = new_user("ada@example.com", vec![Role::Admin, Role::Customer]);
    store.register(&user, &event).await.expect("register");
    let read = store.user_by_email(&Email::parse("ADA@example.com").expect("email")).await.expect("read");
    assert_eq!(read.as_ref(), Some(&user), "the write side round-trips");
    let profile = store.profile(user.id()).await.expect("profile").expect("projected");
    assert_eq!(profile.email, "ada@example.com");
    assert_eq!(profile.roles, vec!["customer", "admin"]);
    assert_eq!(profile.created_at, user.created_at());
}

async fn second_account_with_one_email_is_refused(store: SqlUserStore) {
    let (first, event) = new_user("grace@example.com", vec![]);
    store.register(&first, &event).await.expect("first");
    let (second, event) = new_user("grace@example.com", vec![]);
    let result = store.register(&second, &event).await;
    assert!(matches!(result, Err(StoreError::EmailTaken)), "{result:?}");
    assert!(store.profile(second.id()).await.expect("profile").is_none(), "the refused write left no projection");
}

async fn unknown_user_and_profile_are_absent(store: SqlUserStore) {
    assert!(store.user_by_email(&Email::parse("nobody@example.com").expect("email")).await.expect("read").is_none());
    assert!(store.profile(UserId::new()).await.expect("profile").is_none());
}

async fn login_failures_are_counted_per_email_within_the_window_and_cleared(store: SqlUserStore) {
    for at in [100, 200, 300] {
        store.record_login_failure("eve@example.com", at).await.expect("record");
    }
    store.record_login_failure("other@example.com", 250).await.expect("record");
    assert_eq!(store.login_failures_since("eve@example.com", 150).await.expect("count"), (2, Some(200)));
    assert_eq!(store.login_failures_since("eve@example.com", 0).await.expect("count"), (3, Some(100)));
    store.clear_login_failures("eve@example.com", 0).await.expect("clear");
    assert_eq!(store.login_failures_since("eve@example.com", 0).await.expect("count"), (0, None));
    assert_eq!(store.login_failures_since("other@example.com", 0).await.expect("count").0, 1, "others keep theirs");
}

macro_rules! suite {
    ($make:expr) => {{
        registered_user_reads_back_equal_on_both_sides(store($make).await).await;
        second_account_with_one_email_is_refused(store($make).await).await;
        unknown_user_and_profile_are_absent(store($make).await).await;
        login_failures_are_counted_per_email_within_the_window_and_cleared(store($make).await).await;
    }};
}

#[tokio::test]
async fn identity_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    suite!({
        n += 1;
        Db::connect(&format!("sqlite://{}/identity-{n}.sqlite", dir.path().display()), 4).await.expect("sqlite")
    });
}

#[tokio::test]
async fn identity_store_contract_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let mut n = 0;
    suite!({
        n += 1;
        let url = pg.create_database(&format!("identity_{n}")).await.expect("database");
        Db::connect(&url, 4).await.expect("postgres")
    });
}
