//! What a VM boots with, and what FM learns from the instance metadata
//! service (IMDS) about the EC2 instance it runs on.
//!
//! The boot script is `templates/aws-user-data.sh` filled in: it mounts the
//! data volume, writes the agent's settings between the `FM_AGENT_TOML`
//! heredoc markers and starts `fm-agent`. Those markers are a contract:
//! `agent_toml_of` (and the emulator's VM player) read the settings back
//! by them. The IMDS look-up never holds FM's start up for long: one
//! attempt, a short connect timeout and a bound on the whole.

use std::time::Duration;

/// How long connecting to IMDS may take (off EC2 nothing answers).
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the whole IMDS look-up may take.
const IMDS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Where the agent's settings start and end in the boot script.
const AGENT_TOML_START: &str = "<<'FM_AGENT_TOML'\n";
const AGENT_TOML_END: &str = "\nFM_AGENT_TOML\n";
/// Where the data volume is mounted when the layout's data dir has no
/// parent.
const DEFAULT_MOUNT: &str = "/data";
/// The user the boot script makes for the node (it owns the data volume).
pub const NODE_USER: &str = "dataiku";
/// EC2's instance metadata service, as the agent on the VM reaches it.
pub const IMDS_URL: &str = "http://169.254.169.254";

/// FM's own region, VPC and subnet from the instance metadata service, when
/// FM runs on EC2 (`None` elsewhere, within about two seconds).
pub async fn own_network_from_imds() -> Option<crate::model::network::NetworkDefaults> {
    let imds = aws_config::imds::Client::builder()
        .max_attempts(1)
        .connect_timeout(IMDS_CONNECT_TIMEOUT)
        .build();
    let get = |path: String| {
        let imds = imds.clone();
        async move { imds.get(path).await.ok().map(|v| v.as_ref().to_string()) }
    };
    let lookup = async {
        let region = get("/latest/meta-data/placement/region".into()).await?;
        let mac = get("/latest/meta-data/mac".into()).await?;
        let base = format!("/latest/meta-data/network/interfaces/macs/{mac}");
        let vpc_id = get(format!("{base}/vpc-id")).await?;
        let subnet_id = get(format!("{base}/subnet-id")).await?;
        Some(crate::model::network::NetworkDefaults {
            region,
            vpc_id,
            subnet_id,
        })
    };
    tokio::time::timeout(IMDS_LOOKUP_TIMEOUT, lookup)
        .await
        .ok()
        .flatten()
}

/// The cloud-init script that bootstraps a VM: mounts the data volume,
/// writes the agent's settings and starts `fm-agent`.
pub fn render_boot_script(agent_toml: &str, volume_cloud_id: &str, mount: &str) -> String {
    include_str!("../../../../templates/aws-user-data.sh")
        .replace("{{volume_id}}", volume_cloud_id)
        .replace("{{mount}}", mount)
        .replace("{{node_user}}", NODE_USER)
        .replace("{{agent_toml}}", agent_toml.trim_end())
}

/// Reads the agent's settings back out of a boot script (the emulator's
/// VM player uses the same markers).
pub fn agent_toml_of(script: &str) -> Option<&str> {
    let start = script.find(AGENT_TOML_START)? + AGENT_TOML_START.len();
    let len = script[start..].find(AGENT_TOML_END)?;
    Some(&script[start..start + len])
}

/// `RunInstances`' user-data: the boot script for the agent settings
/// `agent_toml`, with EC2's volume `volume_cloud_id` mounted at the parent
/// of the layout's `data_dir`, base64-encoded.
pub(super) fn user_data(agent_toml: &str, volume_cloud_id: &str, data_dir: &str) -> String {
    let mount = std::path::Path::new(data_dir)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| DEFAULT_MOUNT.into());
    let script = render_boot_script(agent_toml, volume_cloud_id, &mount);
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_settings_are_read_back_from_the_boot_script() {
        let toml = "instance_id = \"i1\"\nfm_url = \"https://fm:10001\"\n";
        let script = render_boot_script(toml, "vol-0abc", "/data");
        assert!(script.starts_with("#!/bin/bash"));
        assert!(script.contains("vol0abc") || script.contains("vol-0abc"));
        assert_eq!(agent_toml_of(&script), Some(toml.trim_end()));
        assert!(script.contains("useradd --system --user-group"));
        assert!(!script.contains("{{"), "a placeholder is left: {script}");
    }
}
