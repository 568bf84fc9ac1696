//! Fleet Manager: the control plane that deploys, upgrades, backs up and
//! restores data-science platform nodes.
//!
//! Layers, outside in: [`api`] (REST surface) → [`app`] (the operations on
//! every object, with validation) → [`ops`] (the operations engine: sagas
//! run by leased workers) → [`store`] (sea-orm over PostgreSQL or SQLite).
//! [`model`] holds the domain types and their rules; [`error`] the one error
//! type every surface maps.

pub mod agents;
pub mod api;
pub mod app;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod console;
pub mod crypto;
pub mod error;
pub mod fleetfile;
pub mod grpc;
pub mod human;
pub mod listen;
pub mod model;
pub mod opctx;
pub mod ops;
pub mod pki;
pub mod remote;
pub mod server;
pub mod store;

/// Makes ring the process's TLS crypto provider. The AWS SDK brings a
/// second one (aws-lc-rs); with two linked in, rustls can't pick one by
/// itself and tonic's TLS would panic. Called by `main` and by
/// [`server::open_app`]; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
