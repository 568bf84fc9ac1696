//! ResetUserPassword: `DATA_DIR/bin/dsscli user-edit --password-stdin --
//! USER`, as the node's user. The password goes on standard input (a
//! command line is readable by every local user), is masked in every
//! progress line and error, and is never logged or journaled.

use super::{Ctx, Outcome, Progress};
use crate::{nodeuser, proc};
use fm_proto::agent::ResetUserPassword;
use serde_json::json;
use std::time::Duration;

/// Longest `dsscli user-edit` may run.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The command.
pub async fn reset(ctx: &Ctx, p: &mut Progress, req: &ResetUserPassword) -> Outcome {
    p.add_secret(&req.password);
    if req.user_name.trim().is_empty() {
        return Err("user_name is empty".into());
    }
    if req.password.is_empty() {
        return Err("password is empty".into());
    }
    let data_dir = &ctx.cfg.data_dir;
    if super::node::installed_version(data_dir).is_none() {
        return Err(format!(
            "the node is not installed ({} is missing)",
            data_dir.join("dss-version.json").display()
        ));
    }
    if req.user_name.starts_with('-') {
        return Err(format!(
            "user_name {:?} may not start with '-'",
            req.user_name
        ));
    }
    p.line(format!(
        "dsscli user-edit --password-stdin -- {}",
        req.user_name
    ))
    .await;
    let mut cmd = nodeuser::command(&ctx.cfg, data_dir.join("bin").join("dsscli"))?;
    cmd.args(["user-edit", "--password-stdin", "--"])
        .arg(&req.user_name);
    let input = format!("{}\n", req.password).into_bytes();
    let done = proc::run_streaming_input(cmd, Some(input), TIMEOUT, p).await?;
    if !done.success() {
        return Err(done.failure("dsscli user-edit"));
    }
    p.line(format!("password of {} reset", req.user_name)).await;
    Ok(json!({ "userName": req.user_name }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tests_support::ctx;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn resetting_fails_when_the_node_is_not_installed() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let mut p = Progress::new("c", ctx.link.clone());
        let e = reset(
            &ctx,
            &mut p,
            &ResetUserPassword {
                user_name: "admin".into(),
                password: "pw-123".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(e.contains("not installed"), "{e}");
    }

    #[tokio::test]
    async fn the_password_is_masked_even_when_dsscli_echoes_it() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let bin = d.path().join("data/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            d.path().join("data/dss-version.json"),
            r#"{"product_version":"1"}"#,
        )
        .unwrap();
        std::fs::write(
            bin.join("dsscli"),
            "#!/bin/sh\nread pw\necho \"args: $*\"\necho \"stdin: $pw\"\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(bin.join("dsscli"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let mut p = Progress::new("c", ctx.link.clone());
        let e = reset(
            &ctx,
            &mut p,
            &ResetUserPassword {
                user_name: "admin".into(),
                password: "pw-123".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(e.contains("exited with status 3"), "{e}");
        // The password is not on the command line; it came on stdin.
        assert!(
            e.contains("args: user-edit --password-stdin -- admin\n"),
            "{e}"
        );
        assert!(e.contains("stdin: ***"), "{e}");
        assert!(!e.contains("pw-123") && !p.lines().concat().contains("pw-123"));
    }
}
