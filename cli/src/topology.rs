//! What `bazaar` knows about a service besides its code: its name, the stage
//! it starts in and the extra settings `bazaar up` hands it. The table of real
//! services lives in `services.rs`; everything else takes the table as a
//! parameter, so commands can be exercised with any set of services.

use std::future::Future;
use std::pin::Pin;

use chassis::server::Shutdown;
use chassis::service::{ServeOptions, StartError};

/// The future a service's `serve` function returns.
pub type ServeFuture = Pin<Box<dyn Future<Output = Result<(), StartError>> + Send>>;

/// A service's entry point, as `bazaar serve <name>` calls it.
pub type ServeFn = fn(ServeOptions, Shutdown) -> ServeFuture;

/// When a service starts under `bazaar up`, relative to the others.
///
/// Stages start in ascending order (each waits for the previous one to be
/// ready) and stop in descending order, so the edge stops taking traffic
/// before the services behind it go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The embedded bus: up before anything that publishes (embedded profile only;
    /// the distributed profile uses NATS JetStream instead).
    Bus,
    /// Services behind the edge; they bind a loopback port `up` picks.
    Core,
    /// The public entry point: one instance on the `--port` of `bazaar up`.
    Edge,
}

/// A setting `bazaar up` passes to a service beyond the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `database.url`: in the distributed profile, its own PostgreSQL database `bazaar_<svc>`
    /// (in the embedded profile the service picks its SQLite file itself).
    Database,
    /// `admin_credentials_file`: the path of the platform's admin credentials.
    AdminCredentials,
    /// `upstreams.<service>`: the base URLs of every instance of every non-edge service.
    Upstreams,
    /// `bus.*`: the broker's URL (embedded) or the NATS servers (distributed).
    Bus,
}

/// One runnable service.
#[derive(Clone, Copy)]
pub struct Service {
    /// The name used on the command line, in config sections and in log file names.
    pub name: &'static str,
    /// When it starts under `bazaar up`.
    pub stage: Stage,
    /// The extra settings it is given under `bazaar up`.
    pub needs: &'static [Need],
    /// Runs the service until shutdown.
    pub serve: ServeFn,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .field("needs", &self.needs)
            .finish()
    }
}

impl Service {
    /// Whether `up` must hand this service `need`.
    pub fn needs(&self, need: Need) -> bool {
        self.needs.contains(&need)
    }
}

/// Finds a service by name.
pub fn find(catalogue: &'static [Service], name: &str) -> Option<&'static Service> {
    catalogue.iter().find(|s| s.name == name)
}

/// The valid service names, comma separated, for error messages.
pub fn names(catalogue: &[Service]) -> String {
    catalogue.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod fake {
    //! A catalogue of services that never start, for tests of the commands.

    use super::*;

    fn never(_: ServeOptions, _: Shutdown) -> ServeFuture {
        Box::pin(async { Err(StartError::Setup("fake service".into())) })
    }

    /// broker, identity, catalog and gateway with the real stages and needs.
    pub const CATALOGUE: &[Service] = &[
        Service { name: "broker", stage: Stage::Bus, needs: &[], serve: never },
        Service {
            name: "identity",
            stage: Stage::Core,
            needs: &[Need::Database, Need::AdminCredentials, Need::Bus],
            serve: never,
        },
        Service { name: "catalog", stage: Stage::Core, needs: &[Need::Database, Need::Bus], serve: never },
        Service { name: "gateway", stage: Stage::Edge, needs: &[Need::Upstreams], serve: never },
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_services_by_name_and_lists_the_valid_names() {
        assert_eq!(find(fake::CATALOGUE, "catalog").map(|s| s.stage), Some(Stage::Core));
        assert!(find(fake::CATALOGUE, "catalogue").is_none());
        assert_eq!(names(fake::CATALOGUE), "broker, identity, catalog, gateway");
    }

    #[test]
    fn the_bus_starts_first_and_the_edge_last() {
        assert!(Stage::Bus < Stage::Core && Stage::Core < Stage::Edge);
    }
}
