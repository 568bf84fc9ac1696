//! Compiles `proto/**/*.proto` with protox (pure Rust) into a descriptor set
//! and generates the tonic/prost code from it: no system `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/fm/agent/v1/agent.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
