//! `fm-agent`: the agent that runs beside the node on every instance (see
//! the library documentation of [`fm_agent`]).

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Already installed is fine: all we need is that ring is the provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    fm_agent::run(fm_agent::Args::parse())
}
