//! Compiles `proto/**/*.proto` with protox (pure Rust) into a descriptor set
//! and generates the tonic/prost code from it: no system `protoc` needed.
//! The public API's descriptor set (with the well-known types it imports) is also kept (`fleet_descriptor.bin`) for
//! the server's reflection service.

use prost::Message;

/// The public API's resources (what the CLI prints).
const RESOURCES: &[&str] = &[
    "Instance",
    "VirtualNetwork",
    "InstanceTemplate",
    "CloudAccount",
    "Image",
    "Snapshot",
    "Backup",
    "BackupVerification",
    "Operation",
    "InstanceEvent",
    "Rollout",
    "RolloutSpec",
    "RolloutSelector",
    "RolloutAction",
    "RolloutCounts",
    "RolloutTarget",
];

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
    // The resources serialize to JSON (the CLI's `--output json`), with the
    // REST API's camelCase names and `settings` as a plain object.
    let mut config = tonic_prost_build::configure();
    for m in RESOURCES {
        config = config.type_attribute(
            format!(".fm.fleet.v1.{m}"),
            "#[derive(serde::Serialize)] #[serde(rename_all = \"camelCase\")]",
        );
    }
    for m in [
        "Instance",
        "VirtualNetwork",
        "InstanceTemplate",
        "CloudAccount",
    ] {
        config = config.field_attribute(
            format!(".fm.fleet.v1.{m}.settings"),
            "#[serde(serialize_with = \"crate::json::settings\")]",
        );
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
