//! The agent protocol (`proto/fm/agent/v1/agent.proto`) and the public gRPC
//! API (`proto/fm/fleet/v1/fleet.proto`): generated messages, servers and
//! clients.

#[allow(clippy::all, missing_docs)]
pub mod agent {
    tonic::include_proto!("fm.agent.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod fleet {
    tonic::include_proto!("fm.fleet.v1");

    /// The public API's encoded descriptor set (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/fleet_descriptor.bin"));
}
