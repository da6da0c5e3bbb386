//! The identity store contract, run on SQLite and on a real PostgreSQL server.
//! Each case gets a fresh, migrated database.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use chassis::db::Db;
use futures_util::future::join_all;
use identity::domain::{DisplayName, Email, PasswordHash, RegisterUser, Role, SignInKey, User, UserId};
use identity::store::{AttemptOutcome, SqlUserStore, StoreError, UserStore};
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

/// The throttle's policy in these cases: five attempts per fifteen minutes.
const WINDOW: Duration = Duration::from_secs(900);
const MAX: u32 = 5;

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("time")
}

fn key(submitted: &str) -> SignInKey {
    SignInKey::for_submitted_email(submitted)
}

async fn attempt(store: &SqlUserStore, key: &SignInKey, unix: i64) -> AttemptOutcome {
    store.try_begin_attempt(key, at(unix), WINDOW, MAX).await.expect("attempt")
}

async fn attempts_are_allowed_up_to_the_limit_then_throttled_until_the_oldest_leaves_the_window(db: Db) {
    let store = store(db).await;
    let eve = key("eve@example.com");
    for unix in [1000, 1010, 1020, 1030, 1040] {
        assert_eq!(attempt(&store, &eve, unix).await, AttemptOutcome::Allowed, "attempt at {unix}");
    }
    assert_eq!(attempt(&store, &eve, 1050).await, AttemptOutcome::Throttled { retry_after_secs: 850 });
    assert_eq!(attempt(&store, &eve, 1899).await, AttemptOutcome::Throttled { retry_after_secs: 1 });
    assert_eq!(
        attempt(&store, &key("other@example.com"), 1050).await,
        AttemptOutcome::Allowed,
        "other keys count alone"
    );
    // At 1901 the attempt of 1000 has left the window: one place is free again.
    assert_eq!(attempt(&store, &eve, 1901).await, AttemptOutcome::Allowed);
    assert_eq!(attempt(&store, &eve, 1902).await, AttemptOutcome::Throttled { retry_after_secs: 8 });
}

/// Two handles on one database, as two replicas of the service have.
async fn concurrent_attempts_for_one_key_allow_exactly_the_limit(replica_a: Db, replica_b: Db) {
    let (a, b) = tokio::join!(store(replica_a), store(replica_b));
    // Several keys at once, so that attempts on every connection of both pools interleave.
    let keys: Vec<SignInKey> = (0..8).map(|n| key(&format!("mallory{n}@example.com"))).collect();
    let stores = [&a, &b];
    let attempts = keys
        .iter()
        .flat_map(|key| (0..20).map(move |n| async move { (*key, attempt(stores[n % 2], key, 5000).await) }));
    let outcomes = join_all(attempts).await;
    for key in &keys {
        let of_key: Vec<AttemptOutcome> = outcomes.iter().filter(|(k, _)| k == key).map(|(_, o)| *o).collect();
        let allowed = of_key.iter().filter(|o| **o == AttemptOutcome::Allowed).count();
        assert_eq!(allowed, MAX as usize, "{of_key:?}");
        assert!(
            of_key
                .iter()
                .all(|o| matches!(o, AttemptOutcome::Allowed | AttemptOutcome::Throttled { retry_after_secs: 900 })),
            "{of_key:?}"
        );
    }
    assert_eq!(attempt(&a, &key("other@example.com"), 5000).await, AttemptOutcome::Allowed);
}

async fn a_submitted_email_with_a_nul_byte_is_an_ordinary_key(db: Db) {
    let store = store(db).await;
    let nul = key("a\u{0}@example.com");
    for unix in 0..5 {
        assert_eq!(attempt(&store, &nul, 100 + unix).await, AttemptOutcome::Allowed);
    }
    assert!(matches!(attempt(&store, &nul, 105).await, AttemptOutcome::Throttled { .. }));
    assert_eq!(attempt(&store, &key("a@example.com"), 105).await, AttemptOutcome::Allowed, "not the same key");
    store.clear_attempts(&nul).await.expect("clear");
    assert_eq!(attempt(&store, &nul, 106).await, AttemptOutcome::Allowed);
}

async fn clearing_forgets_the_attempts_of_one_key_only(db: Db) {
    let store = store(db).await;
    let (ada, eve) = (key("ada@example.com"), key("eve@example.com"));
    for unix in 0..5 {
        attempt(&store, &ada, 100 + unix).await;
        attempt(&store, &eve, 100 + unix).await;
    }
    store.clear_attempts(&ada).await.expect("clear");
    store.clear_attempts(&key("nobody@example.com")).await.expect("clearing a key without attempts");
    assert_eq!(attempt(&store, &ada, 110).await, AttemptOutcome::Allowed);
    assert!(matches!(attempt(&store, &eve, 110).await, AttemptOutcome::Throttled { .. }), "others keep theirs");
}

async fn attempts_older_than_the_window_are_pruned_whatever_their_key(db: Db) {
    let store = store(db.clone()).await;
    let stored = || async {
        let keys: Vec<String> = sqlx::query_scalar("SELECT attempt_key FROM sign_in_attempts ORDER BY at_unix")
            .fetch_all(db.reader())
            .await
            .expect("read attempts");
        keys
    };
    attempt(&store, &key("old@example.com"), 100).await;
    attempt(&store, &key("older@example.com"), 50).await;
    attempt(&store, &key("recent@example.com"), 500).await;
    assert_eq!(stored().await.len(), 3);
    // Now is 1300, the window starts at 400: only the attempts at 500 and 1300 remain.
    let newcomer = key("new@example.com");
    attempt(&store, &newcomer, 1300).await;
    assert_eq!(stored().await, vec![key("recent@example.com").to_string(), newcomer.to_string()]);
    // A refused attempt prunes too.
    for unix in 1301..1305 {
        attempt(&store, &newcomer, unix).await;
    }
    assert!(matches!(attempt(&store, &newcomer, 2000).await, AttemptOutcome::Throttled { .. }));
    assert!(!stored().await.contains(&key("recent@example.com").to_string()));
    assert!(stored().await.iter().all(|k| k.len() == 36 && !k.contains('@')), "no plain emails are stored");
}

/// Runs every case, each on a fresh database whose URL `$fresh_url` gives.
macro_rules! suite {
    ($fresh_url:expr) => {{
        registered_user_reads_back_equal_on_both_sides(store(open(&$fresh_url).await).await).await;
        second_account_with_one_email_is_refused(store(open(&$fresh_url).await).await).await;
        unknown_user_and_profile_are_absent(store(open(&$fresh_url).await).await).await;
        attempts_are_allowed_up_to_the_limit_then_throttled_until_the_oldest_leaves_the_window(open(&$fresh_url).await)
            .await;
        let shared = $fresh_url;
        concurrent_attempts_for_one_key_allow_exactly_the_limit(open(&shared).await, open(&shared).await).await;
        a_submitted_email_with_a_nul_byte_is_an_ordinary_key(open(&$fresh_url).await).await;
        clearing_forgets_the_attempts_of_one_key_only(open(&$fresh_url).await).await;
        attempts_older_than_the_window_are_pruned_whatever_their_key(open(&$fresh_url).await).await;
    }};
}

async fn open(url: &str) -> Db {
    Db::connect(url, 8).await.expect("database opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    suite!({
        n += 1;
        format!("sqlite://{}/identity-{n}.sqlite", dir.path().display())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_store_contract_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let mut n = 0;
    suite!({
        n += 1;
        pg.create_database(&format!("identity_{n}")).await.expect("database")
    });
}
