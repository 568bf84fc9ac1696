//! The `sim` cloud: VMs, volumes and snapshots as records in memory, and
//! for each running VM a simulated agent in-process ([`SimAgents`]). It
//! keeps the cloud port's contract (every call idempotent by FM's ids) so
//! saga tests prove each step without binaries, and shows what is left
//! behind ([`SimCloud::inventory`]).

use super::{CloudProvider, Placement, VmLayout, VmSpec, VmState};
use crate::agents::AgentHub;
use crate::agents::sim::SimAgents;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Vm {
    instance_id: String,
    running: bool,
}

#[derive(Debug, Default)]
struct State {
    vms: BTreeMap<String, Vm>,
    volumes: BTreeSet<String>,
    /// Snapshot reference → the volume it was taken of.
    snapshots: BTreeMap<String, String>,
}

/// What the cloud holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// VMs by id, with whether each runs.
    pub vms: BTreeMap<String, bool>,
    pub volumes: BTreeSet<String>,
    pub snapshots: BTreeSet<String>,
}

impl Inventory {
    /// Whether this holds nothing that `before` did not.
    pub fn within(&self, before: &Inventory) -> bool {
        self.vms.keys().all(|v| before.vms.contains_key(v))
            && self.volumes.is_subset(&before.volumes)
            && self.snapshots.is_subset(&before.snapshots)
    }
}

/// The simulated cloud; cheap to clone.
#[derive(Debug, Clone)]
pub struct SimCloud {
    state: Arc<Mutex<State>>,
    agents: SimAgents,
}

impl SimCloud {
    pub fn new(hub: AgentHub) -> SimCloud {
        SimCloud {
            state: Arc::default(),
            agents: SimAgents::new(hub),
        }
    }

    /// The simulated agents of the VMs.
    pub fn agents(&self) -> &SimAgents {
        &self.agents
    }

    pub fn inventory(&self) -> Inventory {
        let st = self.lock();
        Inventory {
            vms: st.vms.iter().map(|(k, v)| (k.clone(), v.running)).collect(),
            volumes: st.volumes.clone(),
            snapshots: st.snapshots.keys().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl CloudProvider for SimCloud {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn layout(&self, vm_id: &str, volume_id: &str) -> VmLayout {
        VmLayout {
            state_dir: format!("/sim/{vm_id}/state"),
            data_dir: format!("/sim/{volume_id}/data"),
            home_dir: format!("/sim/{vm_id}/home"),
            node_user: None,
            imds_url: None,
        }
    }

    async fn public_url(&self, _at: &Placement, vm_id: &str, port: u16) -> Result<String> {
        Ok(format!("http://{vm_id}.sim:{port}"))
    }

    async fn ensure_volume(&self, _at: &Placement, volume_id: &str) -> Result<()> {
        self.lock().volumes.insert(volume_id.to_string());
        Ok(())
    }

    async fn volume_from_snapshot(
        &self,
        _at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()> {
        let mut st = self.lock();
        if !st.snapshots.contains_key(snapshot_ref) {
            return Err(Error::conflict(format!(
                "snapshot {snapshot_ref} does not exist"
            )));
        }
        st.volumes.insert(volume_id.to_string());
        Ok(())
    }

    async fn delete_volume(&self, _at: &Placement, volume_id: &str) -> Result<()> {
        self.lock().volumes.remove(volume_id);
        Ok(())
    }

    async fn ensure_vm(&self, _at: &Placement, spec: &VmSpec) -> Result<()> {
        {
            let mut st = self.lock();
            if !st.volumes.contains(&spec.volume_id) {
                return Err(Error::conflict(format!(
                    "volume {} does not exist",
                    spec.volume_id
                )));
            }
            let vm = st.vms.entry(spec.vm_id.clone()).or_insert(Vm {
                instance_id: spec.instance_id.clone(),
                running: true,
            });
            vm.running = true;
        }
        self.agents.connect(&spec.instance_id, &spec.vm_id).await;
        Ok(())
    }

    async fn vm_state(&self, _at: &Placement, vm_id: &str) -> Result<VmState> {
        Ok(match self.lock().vms.get(vm_id) {
            Some(v) if v.running => VmState::Running,
            Some(_) => VmState::Stopped,
            None => VmState::Missing,
        })
    }

    async fn start_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        let instance = {
            let mut st = self.lock();
            let vm = st
                .vms
                .get_mut(vm_id)
                .ok_or_else(|| Error::conflict(format!("VM {vm_id} does not exist")))?;
            vm.running = true;
            vm.instance_id.clone()
        };
        self.agents.connect(&instance, vm_id).await;
        Ok(())
    }

    async fn stop_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        let instance = {
            let mut st = self.lock();
            let Some(vm) = st.vms.get_mut(vm_id) else {
                return Ok(());
            };
            vm.running = false;
            vm.instance_id.clone()
        };
        self.agents.disconnect(&instance, vm_id);
        Ok(())
    }

    async fn terminate_vm(&self, _at: &Placement, vm_id: &str) -> Result<()> {
        if let Some(vm) = self.lock().vms.remove(vm_id) {
            self.agents.disconnect(&vm.instance_id, vm_id);
        }
        Ok(())
    }

    async fn snapshot_volume(
        &self,
        _at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)> {
        let mut st = self.lock();
        if !st.volumes.contains(volume_id) {
            return Err(Error::conflict(format!(
                "volume {volume_id} does not exist"
            )));
        }
        let reference = format!("simsnap-{snapshot_id}");
        st.snapshots
            .insert(reference.clone(), volume_id.to_string());
        Ok((reference, 1 << 20))
    }

    async fn delete_snapshot(&self, _at: &Placement, snapshot_ref: &str) -> Result<()> {
        self.lock().snapshots.remove(snapshot_ref);
        Ok(())
    }

    async fn volumes_of_instance(&self, at: &Placement) -> Result<Vec<String>> {
        let first = format!("vol-{}", at.instance_id);
        Ok(self
            .lock()
            .volumes
            .iter()
            .filter(|v| **v == first || v.starts_with(&format!("{first}-")))
            .cloned()
            .collect())
    }
}
