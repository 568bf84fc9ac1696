//! What an agent may do in object storage: each backup command carries
//! credentials for the one backup it reads or writes, not FM's own.
//!
//! With a role configured (`FM_BACKUP_S3_ROLE_ARN`), FM assumes it through
//! STS for every command with a session policy naming that backup's
//! objects (`PREFIX/<instance>/<backup>/*`) and the few actions the command
//! needs, for a short lifetime: an agent (or whoever owns its VM) can
//! neither list, read nor delete another instance's backups. Without one,
//! agents get the configured credentials as they are (FM warns at start).

use crate::error::{Error, Result};
use std::time::Duration;

/// How FM scopes the credentials it gives agents.
#[derive(Debug, Clone)]
pub struct Scoping {
    /// The role FM assumes for each command (it must allow the bucket).
    pub role_arn: String,
    /// STS's endpoint ("" for AWS's).
    pub sts_endpoint: Option<String>,
    /// How long the credentials last (STS allows 15 min to the role's
    /// maximum session).
    pub lifetime: Duration,
}

/// What a command does with its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Take: write the archive and the manifest (and read them back).
    Write,
    /// Restore, clone, verify: read them.
    Read,
}

/// The bucket and key prefix of an `s3://BUCKET[/PREFIX]` URL.
fn bucket_and_prefix(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket, prefix.trim_matches('/')))
}

/// The session policy for `access` to backup `backup` of `instance` under
/// the S3 location `url`.
pub fn session_policy(url: &str, instance: &str, backup: &str, access: Access) -> Result<String> {
    let (bucket, prefix) = bucket_and_prefix(url)
        .ok_or_else(|| Error::invalid(format!("{url} is not an s3:// location")))?;
    let mut key = String::new();
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    key.push_str(&format!("{instance}/{backup}/*"));
    let actions: &[&str] = match access {
        Access::Write => &[
            "s3:PutObject",
            "s3:GetObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ],
        Access::Read => &["s3:GetObject"],
    };
    Ok(serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": actions,
            "Resource": format!("arn:aws:s3:::{bucket}/{key}"),
        }],
    })
    .to_string())
}

/// `loc` as an agent gets it for `access` to `instance`'s backup `backup`:
/// with temporary credentials scoped to that backup when FM is configured
/// to assume a role for it, else as it is.
pub async fn for_agent(
    loc: fm_backup::Location,
    scoping: Option<&Scoping>,
    instance: &str,
    backup: &str,
    access: Access,
) -> Result<fm_backup::Location> {
    let Some(sc) = scoping else {
        return Ok(loc);
    };
    if !loc.url.starts_with("s3://") {
        return Ok(loc);
    }
    use aws_config::BehaviorVersion;
    use aws_sdk_ec2::config::ProvideCredentials;
    let policy = session_policy(&loc.url, instance, backup, access)?;
    let region = loc.s3_region.clone().unwrap_or_else(|| "us-east-1".into());
    let mut base =
        aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(region));
    if let Some(ep) = &sc.sts_endpoint {
        base = base.endpoint_url(ep.clone());
    }
    if let (Some(k), Some(s)) = (&loc.access_key_id, &loc.secret_access_key) {
        base = base.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            k.clone(),
            s.clone(),
            loc.session_token.clone(),
            None,
            "fleet-manager-backups",
        ));
    }
    let base = base.load().await;
    // Session names allow [\w+=,.@-], 2 to 64 characters.
    let name: String = format!("fm-{instance}-{backup}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .take(64)
        .collect();
    let provider = aws_config::sts::AssumeRoleProvider::builder(sc.role_arn.clone())
        .session_name(name)
        .policy(policy)
        .session_length(sc.lifetime)
        .configure(&base)
        .build()
        .await;
    let creds = provider.provide_credentials().await.map_err(|e| {
        Error::internal(format!(
            "can't get backup credentials for {instance}/{backup} by assuming {}: {}",
            sc.role_arn,
            aws_smithy_error_text(&e)
        ))
    })?;
    Ok(fm_backup::Location {
        access_key_id: Some(creds.access_key_id().to_owned()),
        secret_access_key: Some(creds.secret_access_key().to_owned()),
        session_token: creds.session_token().map(str::to_owned),
        ..loc
    })
}

fn aws_smithy_error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_one_backup_and_the_actions_its_command_needs() {
        let p: serde_json::Value = serde_json::from_str(
            &session_policy("s3://bkt/fleet/", "inst-a", "bk-1", Access::Read).unwrap(),
        )
        .unwrap();
        let st = &p["Statement"][0];
        assert_eq!(st["Resource"], "arn:aws:s3:::bkt/fleet/inst-a/bk-1/*");
        assert_eq!(st["Action"], serde_json::json!(["s3:GetObject"]));
        let w: serde_json::Value = serde_json::from_str(
            &session_policy("s3://bkt", "inst-a", "bk-1", Access::Write).unwrap(),
        )
        .unwrap();
        assert_eq!(
            w["Statement"][0]["Resource"],
            "arn:aws:s3:::bkt/inst-a/bk-1/*"
        );
        let actions = w["Statement"][0]["Action"].to_string();
        assert!(actions.contains("s3:PutObject") && !actions.contains("Delete"));
        assert!(!actions.contains("ListBucket"), "{actions}");
        assert!(session_policy("file:///x", "i", "b", Access::Read).is_err());
    }
}
