//! The gateway's shared response cache for public reads.
//!
//! Only what an upstream explicitly marks shareable is stored: a `200` answer to a
//! `GET` without an `Authorization` header whose `Cache-Control` says `public` and
//! gives a positive `s-maxage` or `max-age`, and says none of `private`, `no-store`
//! or `no-cache`. Entries are keyed by method, path, query and `Accept`, so a
//! response that `Vary`s on anything else is not stored.
//!
//! After its freshness lifetime an entry is kept as stale for a grace period
//! (`stale-if-error=N`, else a configurable default) so the proxy can serve it when
//! the upstream fails; [`Lookup::Stale`] is a fallback, not a hit.
//!
//! Writes invalidate: a `POST`, `PUT`, `PATCH` or `DELETE` to a path drops every
//! entry of that path and of its parent collection (see [`parent_collection`]).
//!
//! When full, the entry inserted longest ago is evicted. Reads take a shared lock
//! and clone an `Arc`; only stores and invalidations take the exclusive lock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderMap, HeaderName, SET_COOKIE, VARY};
use http::{Method, StatusCode};

use crate::clock::Nanos;

/// The response header saying how the cache answered: `hit`, `miss` or `stale`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// How long an expired entry is kept for serving on upstream errors when the
/// response did not say (`stale-if-error`).
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(300);

/// RFC 9111 §1.2.2: delta-seconds too large to represent are taken as 2^31.
const MAX_DELTA_SECONDS: u32 = 1 << 31;

/// What identifies a cached response: method, path, query and `Accept`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    path: String,
    variant: Variant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Variant {
    method: Method,
    query: String,
    accept: String,
}

impl CacheKey {
    /// The key for a request. A missing query and an empty one are the same key,
    /// as are a missing `Accept` and an empty one.
    pub fn new(method: Method, path: &str, query: Option<&str>, accept: Option<&str>) -> Self {
        CacheKey {
            path: path.to_owned(),
            variant: Variant {
                method,
                query: query.unwrap_or_default().to_owned(),
                accept: accept.unwrap_or_default().trim().to_owned(),
            },
        }
    }

    /// The key for a request, taking method, path and query from its URI and
    /// `Accept` from its headers.
    pub fn from_request_parts(method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Self {
        let accept = headers.get(http::header::ACCEPT).and_then(|value| value.to_str().ok());
        Self::new(method.clone(), uri.path(), uri.query(), accept)
    }

    /// The request path of this key.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request method of this key.
    pub fn method(&self) -> &Method {
        &self.variant.method
    }
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// The upstream's status (always 200 today).
    pub status: StatusCode,
    /// The upstream's response headers.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// When the response was stored.
    pub stored_at: Nanos,
}

impl CachedResponse {
    /// Seconds since the response was stored, for the `Age` header.
    pub fn age_secs(&self, now: Nanos) -> u64 {
        now.saturating_duration_since(self.stored_at).as_secs()
    }
}

/// What the cache holds for a key at a given time.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A response within its freshness lifetime: serve it without asking upstream.
    Fresh(Arc<CachedResponse>),
    /// An expired response still inside its grace period: ask upstream, and serve
    /// this only if upstream fails.
    Stale(Arc<CachedResponse>),
    /// Nothing usable.
    Miss,
}

/// The parsed `Cache-Control` directives the cache acts on.
///
/// Directive names are case-insensitive, values may be quoted, whitespace around
/// commas and `=` is ignored, and several header lines are read as one list. When
/// a directive with a value repeats, the first occurrence counts (RFC 9111 §4.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `public`: a shared cache may store the response.
    pub public: bool,
    /// `private`: only the client may store it.
    pub private: bool,
    /// `no-store`: nobody may store it.
    pub no_store: bool,
    /// `no-cache`: it must be revalidated before every use.
    pub no_cache: bool,
    /// `max-age`, in seconds; `Some(0)` also when the value was unparseable,
    /// which RFC 9111 says to treat as already stale.
    pub max_age: Option<u32>,
    /// `s-maxage`, which overrides `max-age` for a shared cache like this one.
    pub s_maxage: Option<u32>,
    /// `stale-if-error` (RFC 5861), in seconds.
    pub stale_if_error: Option<u32>,
}

impl CacheControl {
    /// Parses one `Cache-Control` value.
    pub fn parse(value: &str) -> Self {
        let mut parsed = CacheControl::default();
        parsed.absorb(value);
        parsed
    }

    /// Parses every `Cache-Control` line of `headers` as one list; lines that are
    /// not visible ASCII are ignored.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut parsed = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            if let Ok(text) = value.to_str() {
                parsed.absorb(text);
            }
        }
        parsed
    }

    /// The freshness lifetime a shared cache should use, if any.
    pub fn shared_max_age(&self) -> Option<u32> {
        self.s_maxage.or(self.max_age)
    }

    /// Whether these directives allow this shared cache to store the response.
    pub fn allows_shared_storage(&self) -> bool {
        self.public
            && !self.private
            && !self.no_store
            && !self.no_cache
            && self.shared_max_age().is_some_and(|age| age > 0)
    }

    fn absorb(&mut self, value: &str) {
        for (name, argument) in directives(value) {
            match name.to_ascii_lowercase().as_str() {
                "public" => self.public = true,
                "private" => self.private = true,
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "max-age" => first_seconds(&mut self.max_age, argument.as_deref()),
                "s-maxage" => first_seconds(&mut self.s_maxage, argument.as_deref()),
                "stale-if-error" => first_seconds(&mut self.stale_if_error, argument.as_deref()),
                _ => {}
            }
        }
    }
}

/// Records a delta-seconds value unless one was already seen. A malformed value
/// counts as zero, so a response with `max-age=soon` is never stored as fresh.
fn first_seconds(slot: &mut Option<u32>, argument: Option<&str>) {
    if slot.is_none() {
        *slot = Some(argument.map_or(0, parse_delta_seconds));
    }
}

fn parse_delta_seconds(text: &str) -> u32 {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    // Only digits got here, so a parse failure means overflow: saturate.
    text.parse::<u64>()
        .ok()
        .and_then(|n| u32::try_from(n.min(u64::from(MAX_DELTA_SECONDS))).ok())
        .unwrap_or(MAX_DELTA_SECONDS)
}

/// Splits a `Cache-Control` value into `(name, argument)` pairs, honouring quoted
/// strings (which may contain commas and backslash escapes).
fn directives(value: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let name = name.trim().to_owned();
        let mut argument = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut text = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                text.push(escaped);
                            }
                        }
                        other => text.push(other),
                    }
                }
                // Anything between the closing quote and the next comma is junk.
                while chars.peek().is_some_and(|c| *c != ',') {
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                text = text.trim().to_owned();
            }
            argument = Some(text);
        }
        if !name.is_empty() {
            out.push((name, argument));
        }
    }
    out
}

/// Whether a `Vary` header lets the response be keyed by method, path, query and
/// `Accept` alone. `Vary: *` or a header the key does not include rules it out.
fn vary_is_covered_by_key(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().all(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .all(|name| name.eq_ignore_ascii_case("accept"))
        })
    })
}

/// The collection a resource path belongs to: the path without its last segment.
///
/// `/api/v1/products/123` belongs to `/api/v1/products`, so changing a product also
/// drops the cached listings. A trailing slash is ignored. The root and single
/// segment paths have no parent worth invalidating, so `None`.
pub fn parent_collection(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let cut = trimmed.rfind('/')?;
    if cut == 0 {
        return None;
    }
    Some(&trimmed[..cut])
}

/// Whether `method` changes state, so that a request with it invalidates entries.
pub fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

#[derive(Debug)]
struct Entry {
    response: Arc<CachedResponse>,
    fresh_until: Nanos,
    stale_until: Nanos,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Entries grouped by path, so invalidating a path is one removal.
    by_path: HashMap<String, HashMap<Variant, Entry>>,
    /// Keys in insertion order, tagged with the sequence number they were stored
    /// under; a record whose entry was since replaced or removed is skipped.
    order: VecDeque<(u64, CacheKey)>,
    next_seq: u64,
    len: usize,
}

impl Inner {
    fn remove_path(&mut self, path: &str) -> usize {
        let removed = self.by_path.remove(path).map_or(0, |variants| variants.len());
        self.len -= removed;
        removed
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((seq, key)) = self.order.pop_front() {
            let Some(variants) = self.by_path.get_mut(&key.path) else {
                continue;
            };
            if variants.get(&key.variant).is_some_and(|entry| entry.seq == seq) {
                variants.remove(&key.variant);
                if variants.is_empty() {
                    self.by_path.remove(&key.path);
                }
                self.len -= 1;
                return true;
            }
        }
        false
    }

    /// Drops order records whose entries are gone, once they outnumber live
    /// entries, so replacements and invalidations cannot grow the queue forever.
    fn compact_order(&mut self) {
        if self.order.len() <= self.len.saturating_mul(2).max(64) {
            return;
        }
        let by_path = &self.by_path;
        self.order.retain(|(seq, key)| {
            by_path
                .get(&key.path)
                .and_then(|variants| variants.get(&key.variant))
                .is_some_and(|entry| entry.seq == *seq)
        });
    }
}

/// A bounded in-memory cache of public `GET` responses.
#[derive(Debug)]
pub struct ResponseCache {
    max_entries: usize,
    max_body_bytes: usize,
    default_stale_grace: Duration,
    inner: RwLock<Inner>,
}

impl ResponseCache {
    /// A cache of at most `max_entries` responses, none with a body larger than
    /// `max_body_bytes`, with [`DEFAULT_STALE_GRACE`].
    pub fn new(max_entries: usize, max_body_bytes: usize) -> Self {
        ResponseCache {
            max_entries,
            max_body_bytes,
            default_stale_grace: DEFAULT_STALE_GRACE,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// The same cache keeping expired entries for `grace` when a response gives no
    /// `stale-if-error`.
    pub fn with_default_stale_grace(mut self, grace: Duration) -> Self {
        self.default_stale_grace = grace;
        self
    }

    /// The largest body this cache keeps, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How many responses are stored, including stale ones.
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the cache holds for `key` at `now`.
    pub fn get(&self, key: &CacheKey, now: Nanos) -> Lookup {
        let inner = self.read();
        let Some(entry) = inner.by_path.get(&key.path).and_then(|variants| variants.get(&key.variant)) else {
            return Lookup::Miss;
        };
        if now < entry.fresh_until {
            Lookup::Fresh(Arc::clone(&entry.response))
        } else if now < entry.stale_until {
            Lookup::Stale(Arc::clone(&entry.response))
        } else {
            Lookup::Miss
        }
    }

    /// Stores the response if the rules in the module documentation allow it,
    /// returning whether it was stored. A stored response replaces any earlier
    /// one for the same key.
    pub fn store_if_cacheable(
        &self,
        key: CacheKey,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        request_had_authorization: bool,
        now: Nanos,
    ) -> bool {
        if key.variant.method != Method::GET
            || status != StatusCode::OK
            || request_had_authorization
            || body.len() > self.max_body_bytes
            || self.max_entries == 0
            // A cookie is meant for one client; sharing it would leak a session.
            || headers.contains_key(SET_COOKIE)
            || !vary_is_covered_by_key(headers)
        {
            return false;
        }
        let directives = CacheControl::from_headers(headers);
        if !directives.allows_shared_storage() {
            return false;
        }
        let fresh_for = Duration::from_secs(u64::from(directives.shared_max_age().unwrap_or(0)));
        let grace =
            directives.stale_if_error.map_or(self.default_stale_grace, |secs| Duration::from_secs(u64::from(secs)));
        let fresh_until = now + fresh_for;
        let stale_until = fresh_until + grace;

        let response = Arc::new(CachedResponse { status, headers: headers.clone(), body, stored_at: now });

        let mut inner = self.write();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let replacing = inner.by_path.get(&key.path).is_some_and(|variants| variants.contains_key(&key.variant));
        if !replacing {
            while inner.len >= self.max_entries && inner.evict_oldest() {}
            inner.len += 1;
        }
        inner.order.push_back((seq, key.clone()));
        inner
            .by_path
            .entry(key.path)
            .or_default()
            .insert(key.variant, Entry { response, fresh_until, stale_until, seq });
        inner.compact_order();
        true
    }

    /// Drops every entry for `path` (any method, query or `Accept`) and for its
    /// parent collection, returning how many were dropped. A trailing slash on
    /// `path` is ignored.
    pub fn invalidate_path(&self, path: &str) -> usize {
        let trimmed = path.trim_end_matches('/');
        let mut inner = self.write();
        let mut removed = inner.remove_path(path);
        if trimmed != path {
            removed += inner.remove_path(trimmed);
        }
        if let Some(parent) = parent_collection(path) {
            removed += inner.remove_path(parent);
            removed += inner.remove_path(&format!("{parent}/"));
        }
        inner.compact_order();
        removed
    }

    /// Invalidates `path` when `method` is a write; does nothing for reads.
    pub fn invalidate_after(&self, method: &Method, path: &str) -> usize {
        if is_write(method) { self.invalidate_path(path) } else { 0 }
    }

    /// Drops entries past their stale grace at `now`, returning how many.
    pub fn purge_expired(&self, now: Nanos) -> usize {
        let mut inner = self.write();
        let mut removed = 0;
        inner.by_path.retain(|_, variants| {
            let before = variants.len();
            variants.retain(|_, entry| now < entry.stale_until);
            removed += before - variants.len();
            !variants.is_empty()
        });
        inner.len -= removed;
        inner.compact_order();
        removed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // The map is consistent between statements, so a panic elsewhere while
        // holding the lock leaves nothing half-done worth refusing to read.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a request carries credentials, which keeps its response out of the cache.
pub fn has_authorization(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const T0: Nanos = Nanos::from_secs(1000);

    fn key(path: &str) -> CacheKey {
        CacheKey::new(Method::GET, path, None, Some("application/json"))
    }

    fn headers(cache_control: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(cache_control).unwrap());
        headers
    }

    fn store(cache: &ResponseCache, key: CacheKey, cache_control: &str, now: Nanos) -> bool {
        cache.store_if_cacheable(key, StatusCode::OK, &headers(cache_control), Bytes::from_static(b"{}"), false, now)
    }

    fn is_fresh(lookup: Lookup) -> bool {
        matches!(lookup, Lookup::Fresh(_))
    }

    fn is_stale(lookup: Lookup) -> bool {
        matches!(lookup, Lookup::Stale(_))
    }

    fn is_miss(lookup: Lookup) -> bool {
        matches!(lookup, Lookup::Miss)
    }

    #[test]
    fn stores_public_max_age_responses_and_serves_them_fresh() {
        let cache = ResponseCache::new(10, 1024);
        assert!(store(&cache, key("/p"), "public, max-age=60", T0));
        match cache.get(&key("/p"), T0 + Duration::from_secs(59)) {
            Lookup::Fresh(response) => {
                assert_eq!(response.body, Bytes::from_static(b"{}"));
                assert_eq!(response.age_secs(T0 + Duration::from_secs(59)), 59);
            }
            other => panic!("expected a fresh hit, got {other:?}"),
        }
    }

    #[test]
    fn an_expired_entry_is_stale_during_the_grace_then_gone() {
        let cache = ResponseCache::new(10, 1024).with_default_stale_grace(Duration::from_secs(30));
        store(&cache, key("/p"), "public, max-age=60", T0);
        assert!(is_stale(cache.get(&key("/p"), T0 + Duration::from_secs(60))));
        assert!(is_stale(cache.get(&key("/p"), T0 + Duration::from_secs(89))));
        assert!(is_miss(cache.get(&key("/p"), T0 + Duration::from_secs(90))));
    }

    #[test]
    fn stale_if_error_sets_the_grace() {
        let cache = ResponseCache::new(10, 1024);
        store(&cache, key("/p"), "public, max-age=10, stale-if-error=5", T0);
        assert!(is_stale(cache.get(&key("/p"), T0 + Duration::from_secs(14))));
        assert!(is_miss(cache.get(&key("/p"), T0 + Duration::from_secs(15))));
    }

    #[test]
    fn the_default_grace_is_five_minutes() {
        let cache = ResponseCache::new(10, 1024);
        store(&cache, key("/p"), "public, max-age=10", T0);
        assert!(is_stale(cache.get(&key("/p"), T0 + Duration::from_secs(309))));
        assert!(is_miss(cache.get(&key("/p"), T0 + Duration::from_secs(310))));
    }

    #[test]
    fn refuses_responses_not_marked_public() {
        let cache = ResponseCache::new(10, 1024);
        assert!(!store(&cache, key("/p"), "max-age=60", T0));
        assert!(is_miss(cache.get(&key("/p"), T0)));
    }

    #[test]
    fn refuses_responses_without_a_positive_max_age() {
        let cache = ResponseCache::new(10, 1024);
        assert!(!store(&cache, key("/p"), "public", T0));
        assert!(!store(&cache, key("/p"), "public, max-age=0", T0));
        assert!(!store(&cache, key("/p"), "public, max-age=soon", T0));
        assert!(!store(&cache, key("/p"), "public, max-age=-5", T0));
    }

    #[test]
    fn refuses_private_no_store_and_no_cache() {
        let cache = ResponseCache::new(10, 1024);
        assert!(!store(&cache, key("/p"), "public, private, max-age=60", T0));
        assert!(!store(&cache, key("/p"), "public, max-age=60, no-store", T0));
        assert!(!store(&cache, key("/p"), "public, max-age=60, no-cache", T0));
    }

    #[test]
    fn refuses_statuses_other_than_200() {
        let cache = ResponseCache::new(10, 1024);
        for status in [StatusCode::CREATED, StatusCode::NOT_FOUND, StatusCode::BAD_GATEWAY] {
            assert!(!cache.store_if_cacheable(
                key("/p"),
                status,
                &headers("public, max-age=60"),
                Bytes::new(),
                false,
                T0,
            ));
        }
    }

    #[test]
    fn never_stores_when_the_request_carried_authorization() {
        let cache = ResponseCache::new(10, 1024);
        assert!(!cache.store_if_cacheable(
            key("/p"),
            StatusCode::OK,
            &headers("public, max-age=60"),
            Bytes::new(),
            true,
            T0,
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn refuses_methods_other_than_get() {
        let cache = ResponseCache::new(10, 1024);
        let post = CacheKey::new(Method::POST, "/p", None, None);
        assert!(!cache.store_if_cacheable(
            post,
            StatusCode::OK,
            &headers("public, max-age=60"),
            Bytes::new(),
            false,
            T0,
        ));
    }

    #[test]
    fn refuses_bodies_over_the_size_limit() {
        let cache = ResponseCache::new(10, 4);
        let body = Bytes::from_static(b"12345");
        assert!(!cache.store_if_cacheable(key("/p"), StatusCode::OK, &headers("public, max-age=60"), body, false, T0,));
    }

    #[test]
    fn refuses_responses_setting_cookies() {
        let cache = ResponseCache::new(10, 1024);
        let mut h = headers("public, max-age=60");
        h.insert(SET_COOKIE, HeaderValue::from_static("session=1"));
        assert!(!cache.store_if_cacheable(key("/p"), StatusCode::OK, &h, Bytes::new(), false, T0));
    }

    #[test]
    fn refuses_responses_varying_on_headers_outside_the_key() {
        let cache = ResponseCache::new(10, 1024);
        let mut h = headers("public, max-age=60");
        h.insert(VARY, HeaderValue::from_static("Accept, Cookie"));
        assert!(!cache.store_if_cacheable(key("/p"), StatusCode::OK, &h, Bytes::new(), false, T0));
        h.insert(VARY, HeaderValue::from_static("*"));
        assert!(!cache.store_if_cacheable(key("/p"), StatusCode::OK, &h, Bytes::new(), false, T0));
        h.insert(VARY, HeaderValue::from_static("accept"));
        assert!(cache.store_if_cacheable(key("/p"), StatusCode::OK, &h, Bytes::new(), false, T0));
    }

    #[test]
    fn query_and_accept_are_part_of_the_key() {
        let cache = ResponseCache::new(10, 1024);
        let with_query = CacheKey::new(Method::GET, "/p", Some("q=1"), Some("application/json"));
        store(&cache, with_query.clone(), "public, max-age=60", T0);
        assert!(is_fresh(cache.get(&with_query, T0)));
        assert!(is_miss(cache.get(&key("/p"), T0)));
        let other_accept = CacheKey::new(Method::GET, "/p", Some("q=1"), Some("text/html"));
        assert!(is_miss(cache.get(&other_accept, T0)));
    }

    #[test]
    fn a_missing_query_is_the_same_key_as_an_empty_one() {
        assert_eq!(CacheKey::new(Method::GET, "/p", None, None), CacheKey::new(Method::GET, "/p", Some(""), Some("")));
    }

    #[test]
    fn builds_the_key_from_request_parts() {
        let uri: http::Uri = "/api/v1/products?limit=5".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        let built = CacheKey::from_request_parts(&Method::GET, &uri, &h);
        assert_eq!(built, CacheKey::new(Method::GET, "/api/v1/products", Some("limit=5"), Some("application/json")));
    }

    #[test]
    fn a_write_drops_every_entry_of_its_path() {
        let cache = ResponseCache::new(10, 1024);
        let item = "/api/v1/products/42";
        store(&cache, key(item), "public, max-age=60", T0);
        let with_query = CacheKey::new(Method::GET, item, Some("x=1"), None);
        store(&cache, with_query.clone(), "public, max-age=60", T0);
        store(&cache, key("/api/v1/products/43"), "public, max-age=60", T0);

        assert_eq!(cache.invalidate_after(&Method::PUT, item), 2);
        assert!(is_miss(cache.get(&key(item), T0)));
        assert!(is_miss(cache.get(&with_query, T0)));
        assert!(is_fresh(cache.get(&key("/api/v1/products/43"), T0)));
    }

    #[test]
    fn a_write_to_an_item_drops_its_parent_collection() {
        let cache = ResponseCache::new(10, 1024);
        let listing = CacheKey::new(Method::GET, "/api/v1/products", Some("limit=5"), None);
        store(&cache, listing.clone(), "public, max-age=60", T0);
        store(&cache, key("/api/v1/products"), "public, max-age=60", T0);
        store(&cache, key("/api/v1/categories"), "public, max-age=60", T0);

        assert_eq!(cache.invalidate_path("/api/v1/products/42"), 2);
        assert!(is_miss(cache.get(&listing, T0)));
        assert!(is_fresh(cache.get(&key("/api/v1/categories"), T0)));
    }

    #[test]
    fn a_write_to_a_collection_drops_the_collection() {
        let cache = ResponseCache::new(10, 1024);
        store(&cache, key("/api/v1/products"), "public, max-age=60", T0);
        assert_eq!(cache.invalidate_after(&Method::POST, "/api/v1/products"), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn reads_do_not_invalidate() {
        let cache = ResponseCache::new(10, 1024);
        store(&cache, key("/p"), "public, max-age=60", T0);
        assert_eq!(cache.invalidate_after(&Method::GET, "/p"), 0);
        assert_eq!(cache.invalidate_after(&Method::HEAD, "/p"), 0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn parent_collection_drops_the_last_segment() {
        assert_eq!(parent_collection("/api/v1/products/42"), Some("/api/v1/products"));
        assert_eq!(parent_collection("/api/v1/products/42/"), Some("/api/v1/products"));
        assert_eq!(parent_collection("/api/v1/products"), Some("/api/v1"));
        assert_eq!(parent_collection("/products"), None);
        assert_eq!(parent_collection("/"), None);
        assert_eq!(parent_collection(""), None);
    }

    #[test]
    fn evicts_the_entry_inserted_longest_ago_when_full() {
        let cache = ResponseCache::new(2, 1024);
        store(&cache, key("/a"), "public, max-age=60", T0);
        store(&cache, key("/b"), "public, max-age=60", T0);
        // Reading /a does not save it: eviction is by insertion, not by use.
        assert!(is_fresh(cache.get(&key("/a"), T0)));
        store(&cache, key("/c"), "public, max-age=60", T0);
        assert_eq!(cache.len(), 2);
        assert!(is_miss(cache.get(&key("/a"), T0)));
        assert!(is_fresh(cache.get(&key("/b"), T0)));
        assert!(is_fresh(cache.get(&key("/c"), T0)));
    }

    #[test]
    fn replacing_an_entry_refreshes_its_insertion_order() {
        let cache = ResponseCache::new(2, 1024);
        store(&cache, key("/a"), "public, max-age=60", T0);
        store(&cache, key("/b"), "public, max-age=60", T0);
        store(&cache, key("/a"), "public, max-age=60", T0);
        assert_eq!(cache.len(), 2);
        store(&cache, key("/c"), "public, max-age=60", T0);
        assert!(is_miss(cache.get(&key("/b"), T0)));
        assert!(is_fresh(cache.get(&key("/a"), T0)));
    }

    #[test]
    fn eviction_skips_entries_already_invalidated() {
        let cache = ResponseCache::new(2, 1024);
        store(&cache, key("/x/a"), "public, max-age=60", T0);
        store(&cache, key("/y/b"), "public, max-age=60", T0);
        cache.invalidate_path("/x/a");
        store(&cache, key("/z/c"), "public, max-age=60", T0);
        store(&cache, key("/w/d"), "public, max-age=60", T0);
        assert_eq!(cache.len(), 2);
        assert!(is_miss(cache.get(&key("/y/b"), T0)));
        assert!(is_fresh(cache.get(&key("/z/c"), T0)));
        assert!(is_fresh(cache.get(&key("/w/d"), T0)));
    }

    #[test]
    fn churn_keeps_the_order_queue_bounded() {
        let cache = ResponseCache::new(4, 1024);
        for round in 0..1000 {
            store(&cache, key(&format!("/p/{}", round % 3)), "public, max-age=60", T0);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.read().order.len() <= 64);
    }

    #[test]
    fn purge_drops_entries_past_their_grace() {
        let cache = ResponseCache::new(10, 1024).with_default_stale_grace(Duration::ZERO);
        store(&cache, key("/a"), "public, max-age=10", T0);
        store(&cache, key("/b"), "public, max-age=100", T0);
        assert_eq!(cache.purge_expired(T0 + Duration::from_secs(10)), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn parses_directives_case_insensitively_with_spaces_and_quotes() {
        let parsed = CacheControl::parse(" PUBLIC ,Max-Age = \"120\" , stale-if-error=30,x-ext=\"a,b\"");
        assert!(parsed.public);
        assert_eq!(parsed.max_age, Some(120));
        assert_eq!(parsed.stale_if_error, Some(30));
        assert!(parsed.allows_shared_storage());
    }

    #[test]
    fn a_quoted_comma_does_not_split_directives() {
        let parsed = CacheControl::parse("private=\"set-cookie, x-a\", max-age=5");
        assert!(parsed.private);
        assert_eq!(parsed.max_age, Some(5));
    }

    #[test]
    fn the_first_of_repeated_directives_counts() {
        let parsed = CacheControl::parse("public, max-age=10, max-age=999");
        assert_eq!(parsed.max_age, Some(10));
    }

    #[test]
    fn s_maxage_overrides_max_age_for_a_shared_cache() {
        let parsed = CacheControl::parse("public, max-age=0, s-maxage=30");
        assert_eq!(parsed.shared_max_age(), Some(30));
        assert!(parsed.allows_shared_storage());
    }

    #[test]
    fn huge_max_age_saturates() {
        let parsed = CacheControl::parse("public, max-age=99999999999999999999999");
        assert_eq!(parsed.max_age, Some(MAX_DELTA_SECONDS));
    }

    #[test]
    fn reads_directives_across_header_lines() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        let parsed = CacheControl::from_headers(&h);
        assert!(parsed.allows_shared_storage());
    }

    #[test]
    fn detects_authorization_headers() {
        let mut h = HeaderMap::new();
        assert!(!has_authorization(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(has_authorization(&h));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_never_panics(value in ".{0,200}") {
                let _ = CacheControl::parse(&value);
            }

            #[test]
            fn max_age_round_trips_whatever_the_spacing_and_case(
                secs in 1u32..1_000_000,
                upper in any::<bool>(),
                spaces in 0usize..3,
                quoted in any::<bool>(),
            ) {
                let pad = " ".repeat(spaces);
                let name = if upper { "MAX-AGE" } else { "max-age" };
                let value = if quoted { format!("\"{secs}\"") } else { secs.to_string() };
                let text = format!("{pad}public{pad},{pad}{name}{pad}={pad}{value}{pad}");
                let parsed = CacheControl::parse(&text);
                prop_assert_eq!(parsed.max_age, Some(secs));
                prop_assert!(parsed.allows_shared_storage());
            }

            #[test]
            fn never_holds_more_than_max_entries(paths in proptest::collection::vec(0u8..20, 1..100)) {
                let cache = ResponseCache::new(5, 1024);
                for p in paths {
                    store(&cache, key(&format!("/r/{p}")), "public, max-age=60", T0);
                    prop_assert!(cache.len() <= 5);
                }
            }
        }
    }
}
