//! The agent protocol (`proto/fm/agent/v1/agent.proto`): generated messages,
//! the FM-side servers and the agent-side clients.

#[allow(clippy::all, missing_docs)]
pub mod agent {
    tonic::include_proto!("fm.agent.v1");
}
