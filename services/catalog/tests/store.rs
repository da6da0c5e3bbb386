//! The catalog store contract, run on SQLite and on a real PostgreSQL server.
//! Each case gets a fresh, migrated, seeded database.

// Integration tests: a failed expect or unwrap is a failed assertion with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;

use catalog::app::Catalog;
use catalog::domain::{CategorySlug, Cursor, Limit, ProductDraft, ProductInput, Sku};
use catalog::store::{CatalogStore, ProductQuery, SqlCatalogStore, StoreError};
use chassis::db::Db;
use serde_json::json;

/// A fresh seeded store.
async fn seeded(db: Db) -> SqlCatalogStore {
    catalog::store::migrate(&db).await.expect("migrations apply");
    let store = SqlCatalogStore::new(db);
    assert!(Catalog::new(store.clone()).seed_demo().await.expect("seed"), "an empty store is seeded");
    store
}

fn draft(sku: &str, name: &str, category: &str) -> ProductDraft {
    let input: ProductInput = serde_json::from_value(json!({
        "sku": sku, "name": name, "description": "Made for the store suite.",
        "price": {"amount": 1999, "currency": "USD"}, "category": category,
        "attributes": {"material": "walnut"}
    }))
    .expect("input parses");
    ProductDraft::validate(input).expect("draft is valid")
}

fn query(search: Option<&str>, category: Option<&str>, limit: i64, after: Option<Cursor>) -> ProductQuery {
    ProductQuery {
        search: search.map(str::to_owned),
        category: category.map(|c| CategorySlug::parse(c).expect("slug")),
        limit: Limit::new(limit).expect("limit"),
        after,
    }
}

async fn seeding_twice_changes_nothing(store: SqlCatalogStore) {
    assert!(!Catalog::new(store.clone()).seed_demo().await.expect("second seed"));
    let categories = store.categories().await.expect("categories");
    assert_eq!(categories.len(), 8);
    assert!(categories.iter().all(|c| c.product_count == 30), "{categories:?}");
    assert_eq!(categories[0].slug.as_str(), "electronics", "categories keep their display order");
}

async fn browsing_walks_every_product_once_in_sku_order(store: SqlCatalogStore) {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.products(&query(None, None, 50, after)).await.expect("page");
        assert!(page.items.len() <= 50);
        seen.extend(page.items.iter().map(|p| p.sku.as_str().to_owned()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 240);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

async fn category_filter_returns_only_that_category(store: SqlCatalogStore) {
    let page = store.products(&query(None, Some("books"), 100, None)).await.expect("page");
    assert_eq!(page.items.len(), 30);
    assert!(page.next.is_none());
    assert!(page.items.iter().all(|p| p.category.as_str() == "books"));
}

async fn search_finds_a_product_by_a_word_of_its_name_and_pages_without_overlap(store: SqlCatalogStore) {
    let target = store.products(&query(None, Some("kitchen"), 1, None)).await.expect("page").items.remove(0);
    let word = target.name.as_str().split_whitespace().last().expect("a word").to_owned();
    let mut ids = HashSet::new();
    let mut after = None;
    let mut found = false;
    for _ in 0..50 {
        let page = store.products(&query(Some(&word), None, 3, after)).await.expect("search page");
        for product in &page.items {
            assert!(ids.insert(product.id), "{} appeared on two pages", product.sku);
            found |= product.id == target.id;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(found, "searching {word:?} finds {}", target.sku);
}

async fn search_matches_prefixes_and_ignores_query_syntax(store: SqlCatalogStore) {
    let page = store.products(&query(Some("\"walnu* OR ("), None, 20, None)).await.expect("odd search does not fail");
    assert!(page.items.len() <= 20);
    let none = store.products(&query(Some("zzqxwv"), None, 20, None)).await.expect("no match");
    assert!(none.items.is_empty());
    assert!(none.next.is_none());
}

async fn a_cursor_from_the_other_ordering_is_refused(store: SqlCatalogStore) {
    let browse = store.products(&query(None, None, 1, None)).await.expect("page");
    let cursor = browse.next.expect("more pages");
    let result = store.products(&query(Some("a"), None, 1, Some(cursor))).await;
    assert!(matches!(result, Err(StoreError::CursorMismatch)), "{result:?}");
}

async fn created_product_starts_at_version_one_and_is_searchable(store: SqlCatalogStore) {
    let id = uuid::Uuid::now_v7();
    let product = store.create(id, draft("TST-0001", "Quokka Lantern", "garden")).await.expect("create");
    assert_eq!(product.version, 1);
    assert_eq!(store.product(id).await.expect("read"), Some(product));
    let found = store.products(&query(Some("quokka"), None, 5, None)).await.expect("search");
    assert_eq!(found.items.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id]);
}

async fn duplicate_sku_is_refused(store: SqlCatalogStore) {
    let result = store.create(uuid::Uuid::now_v7(), draft("ELE-0001", "Copy", "electronics")).await;
    assert!(matches!(result, Err(StoreError::SkuTaken(ref sku)) if sku == "ELE-0001"), "{result:?}");
}

async fn replace_bumps_the_version_and_refuses_a_stale_one(store: SqlCatalogStore) {
    let id = catalog::domain::product_id_for(&Sku::parse("BOO-0002").expect("sku"));
    let replaced = store.replace(id, 1, draft("BOO-0002", "Wombat Atlas", "books")).await.expect("replace");
    assert_eq!(replaced.version, 2);
    let stale = store.replace(id, 1, draft("BOO-0002", "Another", "books")).await;
    assert!(matches!(stale, Err(StoreError::VersionMismatch { current: 2 })), "{stale:?}");
    let found = store.products(&query(Some("wombat"), None, 5, None)).await.expect("search");
    assert_eq!(found.items.len(), 1, "the search index follows the replace");
    let missing = store.replace(uuid::Uuid::now_v7(), 1, draft("NEW-0001", "Nope", "books")).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
}

async fn every_product_write_stages_one_product_changed_event_and_failed_ones_none(store: SqlCatalogStore) {
    use bus::Message as _;
    let seeded = store.outbox().waiting(1_000).await.expect("outbox");
    assert_eq!(seeded.len(), 240, "the seeded catalog announces every product");
    assert!(seeded.iter().all(|e| e.message_type == catalog::messages::ProductChanged::TYPE));

    let id = uuid::Uuid::now_v7();
    store.create(id, draft("EVT-0001", "Heron Kettle", "kitchen")).await.expect("create");
    store.replace(id, 1, draft("EVT-0001", "Heron Kettle II", "kitchen")).await.expect("replace");
    let _ = store.replace(id, 1, draft("EVT-0001", "Stale", "kitchen")).await;
    let _ = store.create(uuid::Uuid::now_v7(), draft("EVT-0001", "Same SKU", "kitchen")).await;

    let waiting = store.outbox().waiting(1_000).await.expect("outbox");
    let changes: Vec<catalog::messages::ProductChanged> =
        waiting[240..].iter().map(|e| e.decode().expect("a product change")).collect();
    assert_eq!(changes.len(), 2, "the refused writes published nothing: {changes:?}");
    assert_eq!((changes[0].version, changes[1].version), (1, 2));
    assert_eq!(changes[1].name.as_str(), "Heron Kettle II");
    assert_eq!(waiting[241].subject, id.to_string());
}

async fn concurrent_replaces_of_one_version_let_exactly_one_win(store: SqlCatalogStore) {
    let id = catalog::domain::product_id_for(&Sku::parse("TOY-0003").expect("sku"));
    let attempts = (0..6).map(|n| {
        let store = store.clone();
        async move { store.replace(id, 1, draft("TOY-0003", &format!("Racer {n}"), "toys")).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::VersionMismatch { .. }))));
}

macro_rules! suite {
    ($make:expr) => {{
        seeding_twice_changes_nothing(seeded($make).await).await;
        browsing_walks_every_product_once_in_sku_order(seeded($make).await).await;
        category_filter_returns_only_that_category(seeded($make).await).await;
        search_finds_a_product_by_a_word_of_its_name_and_pages_without_overlap(seeded($make).await).await;
        search_matches_prefixes_and_ignores_query_syntax(seeded($make).await).await;
        a_cursor_from_the_other_ordering_is_refused(seeded($make).await).await;
        created_product_starts_at_version_one_and_is_searchable(seeded($make).await).await;
        duplicate_sku_is_refused(seeded($make).await).await;
        replace_bumps_the_version_and_refuses_a_stale_one(seeded($make).await).await;
        concurrent_replaces_of_one_version_let_exactly_one_win(seeded($make).await).await;
        every_product_write_stages_one_product_changed_event_and_failed_ones_none(seeded($make).await).await;
    }};
}

#[tokio::test]
async fn catalog_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    suite!({
        n += 1;
        Db::connect(&format!("sqlite://{}/catalog-{n}.sqlite", dir.path().display()), 4).await.expect("sqlite")
    });
}

#[tokio::test]
async fn catalog_store_contract_on_postgres() {
    let Some(pg) = testkit::postgres_or_skip().await else { return };
    let mut n = 0;
    suite!({
        n += 1;
        let url = pg.create_database(&format!("catalog_{n}")).await.expect("database");
        Db::connect(&url, 4).await.expect("postgres")
    });
}
