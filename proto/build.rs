//! Compiles `proto/**/*.proto` with protox (pure Rust) into a descriptor set
//! and generates the tonic/prost code from it: no system `protoc` needed.
//! The public API's descriptor set (with the well-known types it imports) is also kept (`fleet_descriptor.bin`) for
//! the server's reflection service.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fm/agent/v1/agent.proto",
        "proto/fm/fleet/v1/fleet.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut fleet = descriptors.clone();
    // With the well-known types it imports, so reflection resolves them.
    fleet.file.retain(|f| {
        matches!(
            f.package.as_deref(),
            Some("fm.fleet.v1" | "google.protobuf")
        )
    });
    std::fs::write(out.join("fleet_descriptor.bin"), fleet.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
