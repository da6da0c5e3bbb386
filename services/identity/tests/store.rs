//! The identity store contract, run on SQLite and on a real PostgreSQL server.
//! Each case gets a fresh, migrated database, except the one that starts from
//! the schema an older release left behind.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use chassis::db::Db;
use futures_util::future::join_all;
use identity::domain::{AttemptId, DisplayName, Email, PasswordHash, RegisterUser, Role, SignInKey, User, UserId};
use identity::store::{AttemptOutcome, SqlUserStore, StoreError, UserStore};
use sqlx::migrate::Migrator;
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
    let events = staged_events(&store).await;
    assert_eq!(events.len(), 1, "the refused registration published nothing: {events:?}");
}

/// The envelopes waiting in the store's outbox, oldest first.
async fn staged_events(store: &SqlUserStore) -> Vec<bus::Envelope> {
    store.outbox().waiting(100).await.expect("outbox rows")
}

async fn a_registration_stages_its_event_in_the_same_transaction(store: SqlUserStore) {
    let (user, event) = new_user("lin@example.com", vec![Role::Customer]);
    store.register(&user, &event).await.expect("register");
    let events = staged_events(&store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message_type, "identity.user-registered.v1");
    assert_eq!(events[0].subject, user.id().to_string());
    assert_eq!(events[0].data["email"], "lin@example.com");
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

/// An attempt that must be allowed, and its id.
async fn allowed(store: &SqlUserStore, key: &SignInKey, unix: i64) -> AttemptId {
    match attempt(store, key, unix).await {
        AttemptOutcome::Allowed(id) => id,
        throttled => panic!("the attempt at {unix} was refused: {throttled:?}"),
    }
}

fn is_allowed(outcome: &AttemptOutcome) -> bool {
    matches!(outcome, AttemptOutcome::Allowed(_))
}

async fn attempts_are_allowed_up_to_the_limit_then_throttled_until_the_oldest_leaves_the_window(db: Db) {
    let store = store(db).await;
    let eve = key("eve@example.com");
    for unix in [1000, 1010, 1020, 1030, 1040] {
        allowed(&store, &eve, unix).await;
    }
    assert_eq!(attempt(&store, &eve, 1050).await, AttemptOutcome::Throttled { retry_after_secs: 850 });
    assert_eq!(attempt(&store, &eve, 1899).await, AttemptOutcome::Throttled { retry_after_secs: 1 });
    assert!(is_allowed(&attempt(&store, &key("other@example.com"), 1050).await), "other keys count alone");
    // At 1901 the attempt of 1000 has left the window: one place is free again.
    allowed(&store, &eve, 1901).await;
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
        let allowed = of_key.iter().filter(|o| is_allowed(o)).count();
        assert_eq!(allowed, MAX as usize, "{of_key:?}");
        assert!(
            of_key
                .iter()
                .all(|o| matches!(o, AttemptOutcome::Allowed(_) | AttemptOutcome::Throttled { retry_after_secs: 900 })),
            "{of_key:?}"
        );
    }
    let ids: HashSet<AttemptId> = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            AttemptOutcome::Allowed(id) => Some(*id),
            AttemptOutcome::Throttled { .. } => None,
        })
        .collect();
    assert_eq!(ids.len(), keys.len() * MAX as usize, "every allowed attempt has an id of its own");
    allowed(&a, &key("other@example.com"), 5000).await;
}

async fn a_submitted_email_with_a_nul_byte_is_an_ordinary_key(db: Db) {
    let store = store(db).await;
    let nul = key("a\u{0}@example.com");
    let mut ids = Vec::new();
    for unix in 0..5 {
        ids.push(allowed(&store, &nul, 100 + unix).await);
    }
    assert!(matches!(attempt(&store, &nul, 105).await, AttemptOutcome::Throttled { .. }));
    allowed(&store, &key("a@example.com"), 105).await;
    store.withdraw_attempt(ids[2]).await.expect("withdraw");
    allowed(&store, &nul, 106).await;
}

async fn withdrawing_an_attempt_leaves_the_others_counted(db: Db) {
    let store = store(db).await;
    let (ada, eve) = (key("ada@example.com"), key("eve@example.com"));
    let mut ada_attempts = Vec::new();
    for unix in 0..4 {
        ada_attempts.push(allowed(&store, &ada, 100 + unix).await);
        allowed(&store, &eve, 100 + unix).await;
    }
    // Ada's fifth attempt succeeds: it alone is withdrawn, her four failures stay.
    let success = allowed(&store, &ada, 104).await;
    store.withdraw_attempt(success).await.expect("withdraw");
    store.withdraw_attempt(success).await.expect("withdrawing twice does nothing");
    store.withdraw_attempt(AttemptId::new()).await.expect("withdrawing an id never recorded does nothing");
    allowed(&store, &ada, 110).await;
    assert_eq!(
        attempt(&store, &ada, 111).await,
        AttemptOutcome::Throttled { retry_after_secs: 889 },
        "the four failures and the one after the success fill the window, counted from the oldest failure"
    );
    allowed(&store, &eve, 111).await;
    assert!(matches!(attempt(&store, &eve, 112).await, AttemptOutcome::Throttled { .. }), "others keep theirs");
    // Withdrawing any one attempt frees exactly one place.
    store.withdraw_attempt(ada_attempts[0]).await.expect("withdraw");
    allowed(&store, &ada, 112).await;
    assert!(matches!(attempt(&store, &ada, 113).await, AttemptOutcome::Throttled { .. }));
}

/// A database that the first release of identity made: only migration 1, with
/// a user in it and failures in the table that release throttled with. The
/// current migrations apply on top of it and the store works on the result.
async fn a_database_made_by_the_first_migration_migrates_forward(db: Db) {
    let current = sqlx::migrate!("./migrations");
    let first_only = Migrator::with_migrations(current.iter().filter(|m| m.version == 1).cloned().collect());
    db.migrate(&first_only, &first_only).await.expect("the first migration applies");
    // The bus's tables have their own history; today's store writes its outbox.
    bus::migrate(&db).await.expect("the bus tables");
    let (user, event) = new_user("ada@example.com", vec![Role::Customer]);
    SqlUserStore::new(db.clone()).register(&user, &event).await.expect("register under the first schema");
    let mut tx = db.begin_write().await.expect("begin");
    sqlx::query("INSERT INTO login_failures (email_key, at_unix) VALUES ('ada@example.com', 100)")
        .execute(&mut *tx)
        .await
        .expect("a failure the first release recorded");
    tx.commit().await.expect("commit");

    let store = store(db.clone()).await;
    identity::store::migrate(&db).await.expect("migrating again, as every start does, changes nothing");
    let read = store.user_by_email(user.email()).await.expect("read");
    assert_eq!(read.as_ref(), Some(&user), "users survive the upgrade");
    assert!(store.profile(user.id()).await.expect("profile").is_some());
    let ada = key("ada@example.com");
    let success = allowed(&store, &ada, 1000).await;
    store.withdraw_attempt(success).await.expect("withdraw");
    let gone = sqlx::query("SELECT COUNT(*) FROM login_failures").fetch_one(db.reader()).await;
    assert!(gone.is_err(), "the old table is dropped, and the addresses it held with it");
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
        a_registration_stages_its_event_in_the_same_transaction(store(open(&$fresh_url).await).await).await;
        attempts_are_allowed_up_to_the_limit_then_throttled_until_the_oldest_leaves_the_window(open(&$fresh_url).await)
            .await;
        let shared = $fresh_url;
        concurrent_attempts_for_one_key_allow_exactly_the_limit(open(&shared).await, open(&shared).await).await;
        a_submitted_email_with_a_nul_byte_is_an_ordinary_key(open(&$fresh_url).await).await;
        withdrawing_an_attempt_leaves_the_others_counted(open(&$fresh_url).await).await;
        attempts_older_than_the_window_are_pruned_whatever_their_key(open(&$fresh_url).await).await;
        a_database_made_by_the_first_migration_migrates_forward(open(&$fresh_url).await).await;
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
