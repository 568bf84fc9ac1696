//! The states FM keeps as text, as enums matched exhaustively: an
//! instance's runtime state, its node's state (from heartbeats) and its
//! agent's. Operation states are [`super::operation::OpState`].

use serde::{Deserialize, Serialize};

/// Where an instance's VM is in FM's lifecycle (the `state` of its status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeState {
    /// Never provisioned.
    None,
    Provisioning,
    ProvisioningFailed,
    Running,
    Stopped,
    Deprovisioned,
}

impl RuntimeState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeState::None => "none",
            RuntimeState::Provisioning => "provisioning",
            RuntimeState::ProvisioningFailed => "provisioning-failed",
            RuntimeState::Running => "running",
            RuntimeState::Stopped => "stopped",
            RuntimeState::Deprovisioned => "deprovisioned",
        }
    }

    /// The state stored as `s`; an unknown text reads as `None` (never
    /// written by this version).
    pub fn parse(s: &str) -> RuntimeState {
        match s {
            "provisioning" => RuntimeState::Provisioning,
            "provisioning-failed" => RuntimeState::ProvisioningFailed,
            "running" => RuntimeState::Running,
            "stopped" => RuntimeState::Stopped,
            "deprovisioned" => RuntimeState::Deprovisioned,
            _ => RuntimeState::None,
        }
    }
}

/// The node's state as its agent last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Unknown,
    NotInstalled,
    Stopped,
    Starting,
    Running,
    Unhealthy,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::NotInstalled => "not_installed",
            NodeState::Stopped => "stopped",
            NodeState::Starting => "starting",
            NodeState::Running => "running",
            NodeState::Unhealthy => "unhealthy",
        }
    }

    pub fn parse(s: &str) -> NodeState {
        match s {
            "not_installed" => NodeState::NotInstalled,
            "stopped" => NodeState::Stopped,
            "starting" => NodeState::Starting,
            "running" => NodeState::Running,
            "unhealthy" => NodeState::Unhealthy,
            _ => NodeState::Unknown,
        }
    }

    /// From the agent protocol's enum.
    pub fn from_proto(s: fm_proto::agent::NodeState) -> NodeState {
        use fm_proto::agent::NodeState as P;
        match s {
            P::Unspecified => NodeState::Unknown,
            P::NotInstalled => NodeState::NotInstalled,
            P::Stopped => NodeState::Stopped,
            P::Starting => NodeState::Starting,
            P::Running => NodeState::Running,
            P::Unhealthy => NodeState::Unhealthy,
        }
    }

    /// Whether a node process is up (stopping it changes something).
    pub fn is_up(self) -> bool {
        match self {
            NodeState::Running | NodeState::Starting | NodeState::Unhealthy => true,
            NodeState::Unknown | NodeState::NotInstalled | NodeState::Stopped => false,
        }
    }
}

/// Whether the instance's agent is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// No agent ever reported.
    None,
    Connected,
    Unreachable,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::None => "none",
            AgentState::Connected => "connected",
            AgentState::Unreachable => "unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_states_read_back_what_they_write() {
        for s in [
            RuntimeState::None,
            RuntimeState::Provisioning,
            RuntimeState::ProvisioningFailed,
            RuntimeState::Running,
            RuntimeState::Stopped,
            RuntimeState::Deprovisioned,
        ] {
            assert_eq!(RuntimeState::parse(s.as_str()), s);
        }
    }

    #[test]
    fn node_states_read_back_what_heartbeats_store() {
        use fm_proto::agent::NodeState as P;
        for p in [
            P::Unspecified,
            P::NotInstalled,
            P::Stopped,
            P::Starting,
            P::Running,
            P::Unhealthy,
        ] {
            let s = NodeState::from_proto(p);
            assert_eq!(NodeState::parse(s.as_str()), s);
        }
    }
}
