//! Plan and apply: a fleet file against the fleet as it is (see
//! `model/fleet.rs`). `plan.rs` reads the fleet and computes the changes
//! with a fingerprint; `apply.rs` runs them only while the fingerprint
//! holds, each update guarded by the etag the plan read.

mod apply;
mod plan;

use super::App;
use crate::error::Result;
use crate::model::fleet::{FleetSpec, Plan};

impl App {
    /// The changes that would make the tenant's fleet as `fleet` declares,
    /// checked as the changes themselves would be; nothing is written.
    pub async fn fleet_plan(&self, tenant: &str, fleet: &FleetSpec) -> Result<Plan> {
        Ok(self.fleet_planned(tenant, fleet).await?.plan)
    }
}
