//! The services this binary runs. Adding a service is one line here: its name,
//! its start stage, what `bazaar up` must hand it, and its `serve` function.

use crate::topology::{Need, Service, Stage};

/// Every service `bazaar serve` can run and `bazaar up` starts, in start order within a stage.
#[rustfmt::skip]
pub const ALL: &[Service] = &[
    Service { name: "broker", stage: Stage::Bus, needs: &[], serve: |o, s| Box::pin(broker::serve(o, s)) },
    Service { name: "identity", stage: Stage::Core, needs: &[Need::Database, Need::AdminCredentials, Need::Bus], serve: |o, s| Box::pin(identity::serve(o, s)) },
    Service { name: "catalog", stage: Stage::Core, needs: &[Need::Database, Need::Bus], serve: |o, s| Box::pin(catalog::serve(o, s)) },
    Service { name: "gateway", stage: Stage::Edge, needs: &[Need::Upstreams], serve: |o, s| Box::pin(gateway::serve(o, s)) },
];
