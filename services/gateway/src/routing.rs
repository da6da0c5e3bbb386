//! Where a request goes: the routing table, access policies and the upstream pools.
//!
//! A [`RouteTable`] maps path prefixes to services. It is compiled once: prefixes
//! are normalised and sorted longest first, so matching is a scan that stops at the
//! first prefix ending on a segment boundary and allocates nothing.
//!
//! [`Upstreams`] holds each service's instances and picks one per request by
//! round robin, skipping instances that passive health checking has ejected after
//! consecutive failures (connection errors or 5xx). An ejection lasts a cool-down
//! that doubles on each repeated ejection up to a cap; the instance is then
//! re-admitted. If every instance of a service is ejected the pool fails open and
//! returns the one whose ejection ends soonest: a request that might succeed beats
//! a guaranteed 503. (Deciding to stop trying altogether is a circuit
//! breaker's job, a separate layer.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};

use crate::clock::{Nanos, duration_to_nanos};

/// The role that [`Policy::Admin`] routes require.
pub const ADMIN_ROLE: &str = chassis::extract::ROLE_ADMIN;

/// A routing table or upstream list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route prefix does not start with `/`.
    #[error("route prefix {0:?} must start with '/'")]
    PrefixNotAbsolute(String),
    /// A rewrite target does not start with `/` (an empty one strips the prefix).
    #[error("rewrite {0:?} must be empty or start with '/'")]
    RewriteNotAbsolute(String),
    /// Two routes have the same prefix once trailing slashes are dropped.
    #[error("route prefix {0:?} appears twice")]
    DuplicatePrefix(String),
    /// A route names no service.
    #[error("route {0:?} names no service")]
    EmptyService(String),
    /// An instance URL is not an absolute `http(s)://host:port` base URL.
    #[error("instance URL {url:?} of service {service:?} is not an http(s) base URL")]
    InvalidInstanceUrl {
        /// The service the URL was given for.
        service: String,
        /// The offending URL.
        url: String,
    },
    /// A service was given no instances.
    #[error("service {0:?} has no instances")]
    NoInstances(String),
    /// A service was listed twice.
    #[error("service {0:?} appears twice")]
    DuplicateService(String),
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Anyone, with or without a token.
    Public,
    /// Any caller with a valid token, whatever its roles (admins included).
    Customer,
    /// Callers whose token carries the [`ADMIN_ROLE`].
    Admin,
}

/// Why a caller may not use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No valid token was presented (answer 401).
    #[error("authentication is required")]
    Unauthenticated,
    /// The token is valid but lacks the role the route needs (answer 403).
    #[error("the caller lacks the required role")]
    Forbidden,
}

impl Policy {
    /// Whether a caller with `roles` (`None` when unauthenticated) may pass.
    pub fn authorize<S: AsRef<str>>(self, roles: Option<&[S]>) -> Result<(), Denial> {
        match (self, roles) {
            (Policy::Public, _) => Ok(()),
            (Policy::Customer | Policy::Admin, None) => Err(Denial::Unauthenticated),
            (Policy::Customer, Some(_)) => Ok(()),
            (Policy::Admin, Some(roles)) => {
                if roles.iter().any(|role| role.as_ref() == ADMIN_ROLE) {
                    Ok(())
                } else {
                    Err(Denial::Forbidden)
                }
            }
        }
    }
}

/// Whether `method` only reads: `GET`, `HEAD` and `OPTIONS`.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// One route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// The path prefix, matched on segment boundaries (`/api/v1/products`).
    pub prefix: String,
    /// The service that serves it.
    pub service: String,
    /// What replaces the matched prefix before forwarding (`""` strips it); `None`
    /// forwards the path unchanged.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Who may read (`GET`, `HEAD`, `OPTIONS`), and write unless `write_policy` says otherwise.
    pub policy: Policy,
    /// Who may write (every other method), when it differs from `policy`.
    #[serde(default)]
    pub write_policy: Option<Policy>,
}

impl RouteSpec {
    /// A route sending `prefix` to `service` under one policy for every method.
    pub fn new(prefix: impl Into<String>, service: impl Into<String>, policy: Policy) -> Self {
        RouteSpec { prefix: prefix.into(), service: service.into(), rewrite: None, policy, write_policy: None }
    }

    /// The same route with a different policy for writes.
    pub fn with_write_policy(mut self, policy: Policy) -> Self {
        self.write_policy = Some(policy);
        self
    }

    /// The same route replacing the matched prefix with `rewrite` upstream.
    pub fn with_rewrite(mut self, rewrite: impl Into<String>) -> Self {
        self.rewrite = Some(rewrite.into());
        self
    }
}

/// A compiled route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Without trailing slash; the root route is the empty string, which every
    /// path (all start with `/`) matches on a boundary.
    prefix: String,
    service: String,
    rewrite: Option<String>,
    read_policy: Policy,
    write_policy: Policy,
}

impl Route {
    /// The prefix as matched (trailing slash removed, `/` for the root route).
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() { "/" } else { &self.prefix }
    }

    /// The service this route forwards to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The policy for a request with `method`: reads get the read policy, every
    /// other method the write policy.
    pub fn policy_for_method(&self, method: &Method) -> Policy {
        if is_read(method) { self.read_policy } else { self.write_policy }
    }

    /// Whether `path` falls under this route.
    pub fn matches(&self, path: &str) -> bool {
        path.starts_with(self.prefix.as_str()) && matches!(path.as_bytes().get(self.prefix.len()), None | Some(b'/'))
    }

    /// The upstream path for `path`: the matched prefix replaced by the rewrite,
    /// or `path` itself (borrowed) when there is no rewrite or it does not match.
    pub fn rewrite<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let Some(replacement) = &self.rewrite else {
            return Cow::Borrowed(path);
        };
        if !self.matches(path) || *replacement == self.prefix {
            return Cow::Borrowed(path);
        }
        let rest = &path[self.prefix.len()..];
        if replacement.is_empty() && rest.is_empty() {
            return Cow::Borrowed("/");
        }
        let mut out = String::with_capacity(replacement.len() + rest.len());
        out.push_str(replacement);
        out.push_str(rest);
        Cow::Owned(out)
    }
}

/// The gateway's routing table, compiled once.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Longest prefix first, so the first match is the longest.
    routes: Vec<Route>,
}

/// `prefix` without trailing slashes; the root becomes the empty string.
fn normalise(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

impl RouteTable {
    /// Validates and compiles `routes`.
    pub fn new(routes: Vec<RouteSpec>) -> Result<Self, RouteError> {
        let mut compiled: Vec<Route> = Vec::with_capacity(routes.len());
        for spec in routes {
            if !spec.prefix.starts_with('/') {
                return Err(RouteError::PrefixNotAbsolute(spec.prefix));
            }
            if spec.service.trim().is_empty() {
                return Err(RouteError::EmptyService(spec.prefix));
            }
            let rewrite = match spec.rewrite {
                Some(r) if !r.is_empty() && !r.starts_with('/') => {
                    return Err(RouteError::RewriteNotAbsolute(r));
                }
                Some(r) => Some(normalise(&r).to_owned()),
                None => None,
            };
            let prefix = normalise(&spec.prefix).to_owned();
            if compiled.iter().any(|route| route.prefix == prefix) {
                return Err(RouteError::DuplicatePrefix(spec.prefix));
            }
            compiled.push(Route {
                prefix,
                service: spec.service,
                rewrite,
                read_policy: spec.policy,
                write_policy: spec.write_policy.unwrap_or(spec.policy),
            });
        }
        compiled.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Ok(RouteTable { routes: compiled })
    }

    /// The route with the longest prefix that `path` falls under.
    pub fn match_path(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(path))
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// When passive health checking ejects an instance, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Consecutive failures that eject an instance (at least one).
    pub consecutive_failures: u32,
    /// The first ejection's length; each repeated ejection doubles it.
    pub base_cooldown: Duration,
    /// The longest an ejection lasts.
    pub max_cooldown: Duration,
}

impl Default for EjectionPolicy {
    /// Three failures, 10 s, doubling up to 60 s.
    fn default() -> Self {
        EjectionPolicy {
            consecutive_failures: 3,
            base_cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

impl EjectionPolicy {
    /// The cool-down of the ejection following `previous` back-to-back ejections.
    fn cooldown(&self, previous: u32) -> Duration {
        let factor = 1u32.checked_shl(previous).unwrap_or(u32::MAX);
        self.base_cooldown.checked_mul(factor).unwrap_or(self.max_cooldown).min(self.max_cooldown)
    }
}

#[derive(Debug)]
struct InstanceState {
    service: String,
    base_url: Arc<str>,
    consecutive_failures: AtomicU32,
    /// Ejections since the last success, which sets the next cool-down.
    ejections: AtomicU32,
    /// Nanos reading until which the instance is ejected; zero when never ejected.
    ejected_until: AtomicU64,
}

/// One instance of a service: a cheap handle to its shared health state.
#[derive(Debug, Clone)]
pub struct Instance(Arc<InstanceState>);

impl Instance {
    /// The service it belongs to.
    pub fn service(&self) -> &str {
        &self.0.service
    }

    /// Its base URL without trailing slash, such as `http://127.0.0.1:7001`.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// The base URL as a shared string, cheap to keep (for log notes).
    pub fn shared_base_url(&self) -> Arc<str> {
        Arc::clone(&self.0.base_url)
    }

    /// Whether it is ejected at `now`.
    pub fn is_ejected(&self, now: Nanos) -> bool {
        self.0.ejected_until.load(Ordering::Acquire) > now.as_nanos()
    }

    /// When its current or last ejection ends, if it was ever ejected.
    pub fn ejected_until(&self) -> Option<Nanos> {
        match self.0.ejected_until.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(Nanos::from_nanos(nanos)),
        }
    }

    /// Whether two handles refer to the same instance.
    pub fn same_as(&self, other: &Instance) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.0.service, self.0.base_url)
    }
}

#[derive(Debug)]
struct Pool {
    instances: Vec<Instance>,
    next: AtomicUsize,
}

/// Every service's instances, with round-robin picking and passive ejection.
#[derive(Debug)]
pub struct Upstreams {
    pools: HashMap<String, Pool>,
    policy: EjectionPolicy,
}

/// Checks that `url` is an absolute http(s) URL with a host and no path, and
/// returns it without trailing slash.
fn base_url(service: &str, url: &str) -> Result<String, RouteError> {
    let invalid = || RouteError::InvalidInstanceUrl { service: service.to_owned(), url: url.to_owned() };
    let trimmed = url.trim_end_matches('/');
    let uri: http::Uri = trimmed.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !scheme_ok || uri.authority().is_none() || !path_ok {
        return Err(invalid());
    }
    Ok(trimmed.to_owned())
}

impl Upstreams {
    /// Pools for `services`, each a name and its instances' base URLs.
    pub fn new<I, S, U>(services: I, policy: EjectionPolicy) -> Result<Self, RouteError>
    where
        I: IntoIterator<Item = (S, Vec<U>)>,
        S: Into<String>,
        U: AsRef<str>,
    {
        let mut pools = HashMap::new();
        for (name, urls) in services {
            let name: String = name.into();
            if urls.is_empty() {
                return Err(RouteError::NoInstances(name));
            }
            let mut instances = Vec::with_capacity(urls.len());
            for url in &urls {
                instances.push(Instance(Arc::new(InstanceState {
                    service: name.clone(),
                    base_url: base_url(&name, url.as_ref())?.into(),
                    consecutive_failures: AtomicU32::new(0),
                    ejections: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                })));
            }
            match pools.entry(name) {
                Entry::Occupied(taken) => {
                    return Err(RouteError::DuplicateService(taken.key().clone()));
                }
                Entry::Vacant(slot) => {
                    slot.insert(Pool { instances, next: AtomicUsize::new(0) });
                }
            }
        }
        Ok(Upstreams {
            pools,
            policy: EjectionPolicy { consecutive_failures: policy.consecutive_failures.max(1), ..policy },
        })
    }

    /// The instance of `service` to send the next request to, or `None` for an
    /// unknown service.
    ///
    /// Round robin over the instances not ejected at `now`; when all are ejected,
    /// the one whose ejection ends soonest (fail open, see the module docs).
    pub fn pick(&self, service: &str, now: Nanos) -> Option<Instance> {
        let pool = self.pools.get(service)?;
        let count = pool.instances.len();
        let start = pool.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..count {
            let instance = &pool.instances[start.wrapping_add(offset) % count];
            if !instance.is_ejected(now) {
                return Some(instance.clone());
            }
        }
        pool.instances.iter().min_by_key(|instance| instance.0.ejected_until.load(Ordering::Acquire)).cloned()
    }

    /// Records the outcome of a request to `instance` at `now`. Count connection
    /// errors and 5xx answers as failures, everything else as success.
    ///
    /// Reports arriving while the instance is ejected are ignored: they belong to
    /// requests sent before the ejection (or to fail-open traffic) and say nothing
    /// new. A success resets both the failure count and the cool-down doubling.
    /// Returns the cool-down when this report ejected the instance.
    pub fn report(&self, instance: &Instance, success: bool, now: Nanos) -> Option<Duration> {
        let state = &instance.0;
        if instance.is_ejected(now) {
            return None;
        }
        if success {
            state.consecutive_failures.store(0, Ordering::Release);
            state.ejections.store(0, Ordering::Release);
            return None;
        }
        let failures = state.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.policy.consecutive_failures {
            return None;
        }
        // Only the caller that resets the count ejects, so racing failures
        // produce one ejection, not several back-to-back doublings.
        if state.consecutive_failures.compare_exchange(failures, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let previous = state.ejections.fetch_add(1, Ordering::AcqRel);
            let cooldown = self.policy.cooldown(previous);
            let until = now.as_nanos().saturating_add(duration_to_nanos(cooldown));
            state.ejected_until.store(until.max(1), Ordering::Release);
            return Some(cooldown);
        }
        None
    }

    /// The instances of `service`, or an empty slice for an unknown service.
    pub fn instances(&self, service: &str) -> &[Instance] {
        self.pools.get(service).map_or(&[], |pool| pool.instances.as_slice())
    }

    /// The names of every service with instances.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// The ejection policy in force.
    pub fn policy(&self) -> EjectionPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(vec![
            RouteSpec::new("/", "web-bff", Policy::Public),
            RouteSpec::new("/api/v1/products", "catalog", Policy::Public).with_write_policy(Policy::Admin),
            RouteSpec::new("/api/v1/users", "identity", Policy::Public),
            RouteSpec::new("/api/v1/users/me", "identity", Policy::Customer),
            RouteSpec::new("/api/v1/orders/", "orders", Policy::Customer),
            RouteSpec::new("/m/api", "mobile-bff", Policy::Public).with_rewrite("/api"),
            RouteSpec::new("/admin", "admin-bff", Policy::Admin).with_rewrite(""),
        ])
        .unwrap()
    }

    fn service(table: &RouteTable, path: &str) -> Option<String> {
        table.match_path(path).map(|route| route.service().to_owned())
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let t = table();
        assert_eq!(service(&t, "/api/v1/users/me").as_deref(), Some("identity"));
        assert_eq!(t.match_path("/api/v1/users/me").unwrap().prefix(), "/api/v1/users/me");
        assert_eq!(t.match_path("/api/v1/users").unwrap().prefix(), "/api/v1/users");
        assert_eq!(service(&t, "/api/v1/products/123").as_deref(), Some("catalog"));
        assert_eq!(service(&t, "/index.html").as_deref(), Some("web-bff"));
    }

    #[test]
    fn prefixes_match_only_on_segment_boundaries() {
        let t = table();
        assert_eq!(service(&t, "/api/v1/products").as_deref(), Some("catalog"));
        assert_eq!(service(&t, "/api/v1/products/").as_deref(), Some("catalog"));
        assert_eq!(service(&t, "/api/v1/productsX").as_deref(), Some("web-bff"));
        assert_eq!(service(&t, "/api/v1/users/meet").unwrap(), "identity");
        assert_eq!(t.match_path("/api/v1/users/meet").unwrap().prefix(), "/api/v1/users");
    }

    #[test]
    fn a_trailing_slash_on_a_prefix_is_ignored() {
        let t = table();
        assert_eq!(service(&t, "/api/v1/orders").as_deref(), Some("orders"));
        assert_eq!(service(&t, "/api/v1/orders/9/cancel").as_deref(), Some("orders"));
    }

    #[test]
    fn without_a_root_route_unknown_paths_match_nothing() {
        let t = RouteTable::new(vec![RouteSpec::new("/api", "x", Policy::Public)]).unwrap();
        assert!(t.match_path("/other").is_none());
        assert!(t.match_path("/apix").is_none());
    }

    #[test]
    fn rewrite_replaces_the_matched_prefix() {
        let t = table();
        let mobile = t.match_path("/m/api/orders/1").unwrap();
        assert_eq!(mobile.rewrite("/m/api/orders/1"), "/api/orders/1");
        assert_eq!(mobile.rewrite("/m/api"), "/api");
        let admin = t.match_path("/admin/orders").unwrap();
        assert_eq!(admin.rewrite("/admin/orders"), "/orders");
        assert_eq!(admin.rewrite("/admin"), "/");
        assert_eq!(admin.rewrite("/admin/"), "/");
    }

    #[test]
    fn without_a_rewrite_the_path_is_borrowed_unchanged() {
        let t = table();
        let route = t.match_path("/api/v1/products/1").unwrap();
        assert!(matches!(route.rewrite("/api/v1/products/1"), Cow::Borrowed("/api/v1/products/1")));
    }

    #[test]
    fn reads_and_writes_get_their_own_policies() {
        let t = table();
        let catalog = t.match_path("/api/v1/products").unwrap();
        assert_eq!(catalog.policy_for_method(&Method::GET), Policy::Public);
        assert_eq!(catalog.policy_for_method(&Method::HEAD), Policy::Public);
        assert_eq!(catalog.policy_for_method(&Method::OPTIONS), Policy::Public);
        assert_eq!(catalog.policy_for_method(&Method::POST), Policy::Admin);
        assert_eq!(catalog.policy_for_method(&Method::PUT), Policy::Admin);
        assert_eq!(catalog.policy_for_method(&Method::DELETE), Policy::Admin);
        let orders = t.match_path("/api/v1/orders").unwrap();
        assert_eq!(orders.policy_for_method(&Method::POST), Policy::Customer);
    }

    #[test]
    fn rejects_invalid_tables() {
        assert_eq!(
            RouteTable::new(vec![RouteSpec::new("api", "x", Policy::Public)]).unwrap_err(),
            RouteError::PrefixNotAbsolute("api".into())
        );
        assert_eq!(
            RouteTable::new(vec![
                RouteSpec::new("/a", "x", Policy::Public),
                RouteSpec::new("/a/", "y", Policy::Public),
            ])
            .unwrap_err(),
            RouteError::DuplicatePrefix("/a/".into())
        );
        assert_eq!(
            RouteTable::new(vec![RouteSpec::new("/a", " ", Policy::Public)]).unwrap_err(),
            RouteError::EmptyService("/a".into())
        );
        assert_eq!(
            RouteTable::new(vec![RouteSpec::new("/a", "x", Policy::Public).with_rewrite("b")]).unwrap_err(),
            RouteError::RewriteNotAbsolute("b".into())
        );
    }

    #[test]
    fn route_specs_deserialize_from_config() {
        let spec: RouteSpec = serde_json::from_str(
            r#"{"prefix":"/api/v1/products","service":"catalog","policy":"public","write_policy":"admin"}"#,
        )
        .unwrap();
        assert_eq!(
            spec,
            RouteSpec::new("/api/v1/products", "catalog", Policy::Public).with_write_policy(Policy::Admin)
        );
    }

    #[test]
    fn public_routes_admit_anyone() {
        assert_eq!(Policy::Public.authorize::<&str>(None), Ok(()));
    }

    #[test]
    fn customer_routes_need_any_valid_token() {
        assert_eq!(Policy::Customer.authorize::<&str>(None), Err(Denial::Unauthenticated));
        assert_eq!(Policy::Customer.authorize::<&str>(Some(&[])), Ok(()));
        assert_eq!(Policy::Customer.authorize(Some(&["admin"])), Ok(()));
    }

    #[test]
    fn admin_routes_need_the_admin_role() {
        assert_eq!(Policy::Admin.authorize::<&str>(None), Err(Denial::Unauthenticated));
        assert_eq!(Policy::Admin.authorize(Some(&["customer"])), Err(Denial::Forbidden));
        assert_eq!(Policy::Admin.authorize(Some(&["customer".to_owned(), "admin".to_owned()])), Ok(()));
    }

    const T0: Nanos = Nanos::from_secs(100);

    fn pool(n: u16) -> Upstreams {
        let urls: Vec<String> = (0..n).map(|i| format!("http://127.0.0.1:{}/", 7000 + i)).collect();
        Upstreams::new([("catalog", urls)], EjectionPolicy::default()).unwrap()
    }

    fn fail(upstreams: &Upstreams, instance: &Instance, times: u32, now: Nanos) {
        for _ in 0..times {
            upstreams.report(instance, false, now);
        }
    }

    #[test]
    fn round_robin_spreads_requests_evenly() {
        let upstreams = pool(3);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..300 {
            let instance = upstreams.pick("catalog", T0).unwrap();
            *counts.entry(instance.base_url().to_owned()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&count| count == 100));
        assert!(counts.contains_key("http://127.0.0.1:7000"));
    }

    #[test]
    fn unknown_services_have_no_instance() {
        assert!(pool(1).pick("orders", T0).is_none());
        assert!(pool(1).instances("orders").is_empty());
    }

    #[test]
    fn ejects_after_consecutive_failures() {
        let upstreams = pool(2);
        let bad = upstreams.instances("catalog")[0].clone();
        fail(&upstreams, &bad, 2, T0);
        assert!(!bad.is_ejected(T0));
        fail(&upstreams, &bad, 1, T0);
        assert!(bad.is_ejected(T0));
        for _ in 0..10 {
            assert!(!upstreams.pick("catalog", T0).unwrap().same_as(&bad));
        }
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let upstreams = pool(2);
        let flaky = upstreams.instances("catalog")[0].clone();
        fail(&upstreams, &flaky, 2, T0);
        upstreams.report(&flaky, true, T0);
        fail(&upstreams, &flaky, 2, T0);
        assert!(!flaky.is_ejected(T0));
    }

    #[test]
    fn readmits_after_the_cool_down() {
        let upstreams = pool(2);
        let bad = upstreams.instances("catalog")[0].clone();
        fail(&upstreams, &bad, 3, T0);
        assert_eq!(bad.ejected_until(), Some(T0 + Duration::from_secs(10)));
        assert!(bad.is_ejected(T0 + Duration::from_millis(9_999)));
        let later = T0 + Duration::from_secs(10);
        assert!(!bad.is_ejected(later));
        let picked: Vec<Instance> = (0..4).map(|_| upstreams.pick("catalog", later).unwrap()).collect();
        assert!(picked.iter().any(|instance| instance.same_as(&bad)));
    }

    #[test]
    fn repeated_ejections_double_the_cool_down_up_to_the_cap() {
        let upstreams = pool(2);
        let bad = upstreams.instances("catalog")[0].clone();
        let mut now = T0;
        for expected in [10, 20, 40, 60, 60] {
            fail(&upstreams, &bad, 3, now);
            assert_eq!(bad.ejected_until(), Some(now + Duration::from_secs(expected)));
            now = now + Duration::from_secs(expected);
        }
    }

    #[test]
    fn a_success_after_readmission_resets_the_doubling() {
        let upstreams = pool(2);
        let bad = upstreams.instances("catalog")[0].clone();
        fail(&upstreams, &bad, 3, T0);
        let later = T0 + Duration::from_secs(10);
        upstreams.report(&bad, true, later);
        fail(&upstreams, &bad, 3, later);
        assert_eq!(bad.ejected_until(), Some(later + Duration::from_secs(10)));
    }

    #[test]
    fn failures_reported_while_ejected_are_ignored() {
        let upstreams = pool(2);
        let bad = upstreams.instances("catalog")[0].clone();
        fail(&upstreams, &bad, 3, T0);
        fail(&upstreams, &bad, 10, T0 + Duration::from_secs(1));
        assert_eq!(bad.ejected_until(), Some(T0 + Duration::from_secs(10)));
        let later = T0 + Duration::from_secs(10);
        fail(&upstreams, &bad, 2, later);
        assert!(!bad.is_ejected(later));
    }

    #[test]
    fn when_all_are_ejected_picks_the_one_readmitted_soonest() {
        let upstreams = pool(3);
        let instances = upstreams.instances("catalog").to_vec();
        fail(&upstreams, &instances[0], 3, T0 + Duration::from_secs(2));
        fail(&upstreams, &instances[1], 3, T0);
        fail(&upstreams, &instances[2], 3, T0 + Duration::from_secs(1));
        for _ in 0..5 {
            let picked = upstreams.pick("catalog", T0 + Duration::from_secs(3)).unwrap();
            assert!(picked.same_as(&instances[1]));
        }
    }

    #[test]
    fn rejects_bad_instance_lists() {
        let policy = EjectionPolicy::default();
        assert!(matches!(
            Upstreams::new([("a", vec!["127.0.0.1:80"])], policy),
            Err(RouteError::InvalidInstanceUrl { .. })
        ));
        assert!(matches!(
            Upstreams::new([("a", vec!["http://h:1/path"])], policy),
            Err(RouteError::InvalidInstanceUrl { .. })
        ));
        assert_eq!(
            Upstreams::new([("a", Vec::<String>::new())], policy).unwrap_err(),
            RouteError::NoInstances("a".into())
        );
        assert_eq!(
            Upstreams::new([("a", vec!["http://h:1"]), ("a", vec!["http://h:2"])], policy).unwrap_err(),
            RouteError::DuplicateService("a".into())
        );
    }

    #[test]
    fn concurrent_picks_stay_even() {
        let upstreams = Arc::new(pool(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let upstreams = Arc::clone(&upstreams);
                std::thread::spawn(move || {
                    let mut counts = [0u32; 4];
                    for _ in 0..1000 {
                        let picked = upstreams.pick("catalog", T0).unwrap();
                        let port: usize = picked.base_url().rsplit(':').next().unwrap().parse().unwrap();
                        counts[port - 7000] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0u32; 4];
        for thread in threads {
            for (slot, count) in total.iter_mut().zip(thread.join().unwrap()) {
                *slot += count;
            }
        }
        assert_eq!(total, [1000; 4]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_match_is_the_longest_prefix_on_a_boundary(
                segments in proptest::collection::vec("[a-c]{1,2}", 0..5),
            ) {
                let t = RouteTable::new(vec![
                    RouteSpec::new("/", "root", Policy::Public),
                    RouteSpec::new("/a", "a", Policy::Public),
                    RouteSpec::new("/a/b", "ab", Policy::Public),
                    RouteSpec::new("/a/bc", "abc", Policy::Public),
                ]).unwrap();
                let path = format!("/{}", segments.join("/"));
                let expected = t
                    .routes()
                    .iter()
                    .filter(|route| {
                        let p = route.prefix().trim_end_matches('/');
                        path == p || path.starts_with(&format!("{p}/"))
                    })
                    .max_by_key(|route| route.prefix().len())
                    .map(|route| route.service().to_owned());
                prop_assert_eq!(t.match_path(&path).map(|r| r.service().to_owned()), expected);
            }
        }
    }
}
