//! Taking a backup of an instance's data dir (`BACKUP_INSTANCE`): the node
//! stopped first when its policy says `STOP_NODE` and it runs, then started
//! again whatever happens (`resume-node`, or the undo of `quiesce-node`).
//! The agent streams the archive to object storage; FM records the backup
//! once its manifest is written. `take-backup`'s undo removes the backup
//! (storage and catalogue). The result is the backup.
//!
//! What the agent reports is checked, not trusted ([`check_report`]):
//! whether the backup is encrypted is FM's policy, its time FM's clock, its
//! node version the one FM installed; a report that disagrees, or names no
//! proper manifest hash or a negative size, fails the step and what was
//! uploaded is removed.

use super::common::{
    Nothing, Quiesced, backup_key_hex, backup_location, failed, instance_and_template,
    proto_location, require_agent, resume_quiesced, run_command, runtime, stop_for,
};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{OpFailure, Result};
use crate::model::backup::Backup;
use crate::model::instance::BackupConsistency;
use crate::model::now_ms;
use crate::store::entities::backup;
use crate::store::lifecycle as lq;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "BACKUP_INSTANCE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The id the backup gets (chosen when the operation is submitted).
    #[serde(rename = "backupId")]
    pub backup_id: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub automated: bool,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("quiesce-node", quiesce, undo resume_quiesced),
            step!("take-backup", take_backup, undo remove_taken_backup),
            step!("resume-node", resume_quiesced),
        ],
    )
    .result_of("take-backup")
}

/// What the agent reports of a backup it took. Its `createdAtMs` is not
/// read: the backup's time is FM's.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Taken {
    node_version: String,
    archive_size: i64,
    data_bytes: i64,
    files: i64,
    manifest_sha256: String,
    #[serde(default)]
    encrypted: Option<bool>,
}

/// What FM knows of a backup before the agent answers.
#[derive(Debug, Clone, Copy)]
struct Expected<'a> {
    /// The policy's `encrypt` (a key was sent).
    encrypted: bool,
    /// The node version FM installed on the instance.
    node_version: Option<&'a str>,
    /// FM's clock when the agent answered: the backup's time.
    now_ms: i64,
}

/// The backup's facts as FM records them: the agent's report `t` checked
/// against what FM expects; why it can't be recorded otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    node_version: String,
    archive_bytes: i64,
    data_bytes: i64,
    files: i64,
    manifest_sha256: String,
    encrypted: bool,
    created_at: i64,
}

fn check_report(t: &Taken, want: Expected<'_>) -> std::result::Result<Checked, String> {
    if let Some(enc) = t.encrypted
        && enc != want.encrypted
    {
        return Err(format!(
            "the agent reports the backup {}encrypted, but the backup policy says {}",
            if enc { "" } else { "not " },
            if want.encrypted {
                "encrypt"
            } else {
                "don't encrypt"
            }
        ));
    }
    let hash = &t.manifest_sha256;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the agent reports manifest SHA-256 {hash:?}, not 64 hexadecimal digits"
        ));
    }
    let Some(installed) = want.node_version else {
        return Err(
            "FM installed no node version on this instance to compare the backup's with"
                .to_string(),
        );
    };
    if t.node_version != installed {
        return Err(format!(
            "the agent reports a backup of node version {:?}, but FM installed {installed:?}",
            t.node_version
        ));
    }
    for (name, v) in [
        ("archiveSize", t.archive_size),
        ("dataBytes", t.data_bytes),
        ("files", t.files),
    ] {
        if v < 0 {
            return Err(format!("the agent reports a negative {name} ({v})"));
        }
    }
    Ok(Checked {
        node_version: t.node_version.clone(),
        archive_bytes: t.archive_size,
        data_bytes: t.data_bytes,
        files: t.files,
        manifest_sha256: hash.to_ascii_lowercase(),
        encrypted: want.encrypted,
        created_at: want.now_ms,
    })
}

/// Stops the node while it is archived (policy `STOP_NODE`), if it runs.
async fn quiesce(c: StepCtx) -> Result<Quiesced> {
    require_agent(&c).await?;
    backup_location(&c.svc.lc, None)?;
    let (inst, _) = instance_and_template(&c).await?;
    if inst.backup_policy.consistency == BackupConsistency::None {
        return Ok(Quiesced::default());
    }
    // Whether it ran comes from the agent's (journaled) answer: a run of
    // this step after the node was stopped by an earlier run still knows
    // to start it again.
    let stopped = stop_for(&c, "quiesce-node").await?;
    if stopped {
        c.log("node stopped for a consistent backup").await;
    }
    Ok(Quiesced {
        stopped,
        frozen: false,
    })
}

async fn take_backup(c: StepCtx) -> Result<Backup> {
    let p: Params = c.params()?;
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &p.backup_id).await? {
        return Ok(Backup::from_row(&b));
    }
    let (inst, _) = instance_and_template(&c).await?;
    let policy = &inst.backup_policy;
    let loc = backup_location(&c.svc.lc, None)?;
    let installed = runtime(&c).await?.node_version;
    let mut want = Expected {
        encrypted: policy.encrypt,
        node_version: installed.as_deref(),
        now_ms: 0,
    };
    let scoped = crate::ops::backup_access::for_agent(
        loc.clone(),
        c.svc.lc.backup_scoping.as_ref(),
        &c.target,
        &p.backup_id,
        crate::ops::backup_access::Access::Write,
    )
    .await?;
    let answer = run_command(
        &c,
        "take-backup",
        command::Kind::TakeBackup(fm_proto::agent::TakeBackup {
            location: Some(proto_location(&scoped)),
            backup_id: p.backup_id.clone(),
            exclusions: policy.exclusions.clone(),
            key_hex: backup_key_hex(&c, want.encrypted, &p.backup_id),
        }),
    )
    .await;
    want.now_ms = now_ms();
    let checked = answer.and_then(|out| {
        let t: Taken = serde_json::from_value(out).map_err(|e| {
            failed(
                OpFailure::AgentCommandFailed,
                format!("the agent's backup report can't be read: {e}"),
            )
        })?;
        check_report(&t, want).map_err(|e| failed(OpFailure::AgentCommandFailed, e))
    });
    // What the agent says it wrote is read back from storage with FM's own
    // credentials: the manifest must have the reported hash, open with
    // FM's key when the policy encrypts, and name this backup.
    let checked = match checked {
        Ok(t) => reread_manifest(&c, &loc, &p.backup_id, &t)
            .await
            .map(|()| t),
        Err(e) => Err(e),
    };
    let t = match checked {
        Ok(t) => t,
        Err(e) => {
            // What an interrupted upload left, or one FM can't vouch for,
            // is not a backup: remove it.
            if let Ok(store) = loc.open()
                && store.delete_backup(&c.target, &p.backup_id).await.is_ok()
            {
                c.log("removed what the failed backup had uploaded").await;
            }
            return Err(e);
        }
    };
    let row = backup::Model {
        id: p.backup_id,
        tenant_id: c.tenant.clone(),
        instance_id: c.target.clone(),
        location_url: loc.url.clone(),
        node_version: t.node_version,
        created_at: t.created_at,
        archive_bytes: t.archive_bytes,
        data_bytes: t.data_bytes,
        files: t.files,
        manifest_sha256: t.manifest_sha256,
        encrypted: t.encrypted,
        automated: p.automated,
        reason: p.reason,
        verified_at: None,
        verify_ok: None,
        verify_message: None,
    };
    lq::backup_insert(c.store.conn(), row.clone()).await?;
    Ok(Backup::from_row(&row))
}

async fn reread_manifest(
    c: &StepCtx,
    loc: &fm_backup::Location,
    backup_id: &str,
    t: &Checked,
) -> Result<()> {
    let bad = |m: String| failed(OpFailure::AgentCommandFailed, m);
    let store = loc.open().map_err(|e| bad(e.0))?;
    let key_hex = backup_key_hex(c, t.encrypted, backup_id);
    let key = if key_hex.is_empty() {
        None
    } else {
        Some(
            fm_backup::crypt::BackupKey::from_hex(&key_hex)
                .map_err(|e| crate::error::Error::internal(e.0))?,
        )
    };
    // It checks the hash, the encryption and that it names this backup.
    fm_backup::restore::read_manifest(
        &store,
        &c.target,
        backup_id,
        key.as_ref(),
        Some(&t.manifest_sha256),
    )
    .await
    .map_err(|e| {
        bad(format!(
            "the backup the agent reported does not check out: {}",
            e.0
        ))
    })?;
    Ok(())
}

/// Undo of `take-backup`: the backup goes, in storage and in the catalogue.
async fn remove_taken_backup(c: StepCtx) -> Result<Nothing> {
    let p: Params = c.params()?;
    if let Some(b) = lq::backup_get(c.store.conn(), &c.target, &p.backup_id).await? {
        super::backup_delete::remove(&c, &b).await?;
    }
    Ok(Nothing {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Taken {
        Taken {
            node_version: "14.2.0".into(),
            archive_size: 1024,
            data_bytes: 4096,
            files: 3,
            manifest_sha256: "ab".repeat(32),
            encrypted: Some(true),
        }
    }

    const WANT: Expected<'static> = Expected {
        encrypted: true,
        node_version: Some("14.2.0"),
        now_ms: 1_700_000_000_000,
    };

    fn refused(t: Taken, want: Expected<'_>, says: &str) {
        let e = check_report(&t, want).unwrap_err();
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn a_report_that_agrees_is_recorded_with_fms_facts() {
        let c = check_report(&good(), WANT).unwrap();
        assert_eq!(
            c,
            Checked {
                node_version: "14.2.0".into(),
                archive_bytes: 1024,
                data_bytes: 4096,
                files: 3,
                manifest_sha256: "ab".repeat(32),
                encrypted: true,
                created_at: 1_700_000_000_000,
            }
        );
        // An agent that does not say takes the policy's word.
        let c = check_report(
            &Taken {
                encrypted: None,
                ..good()
            },
            WANT,
        )
        .unwrap();
        assert!(c.encrypted);
        let upper = Taken {
            manifest_sha256: "AB".repeat(32),
            ..good()
        };
        assert_eq!(
            check_report(&upper, WANT).unwrap().manifest_sha256,
            "ab".repeat(32)
        );
    }

    #[test]
    fn an_encrypted_flag_against_the_policy_is_refused() {
        let plain = Taken {
            encrypted: Some(false),
            ..good()
        };
        refused(
            plain,
            WANT,
            "not encrypted, but the backup policy says encrypt",
        );
        let unasked = Expected {
            encrypted: false,
            ..WANT
        };
        refused(good(), unasked, "says don't encrypt");
    }

    #[test]
    fn a_manifest_hash_that_is_not_64_hex_digits_is_refused() {
        for h in [
            String::new(),
            "ab".repeat(31),
            "ab".repeat(33),
            format!("{}zz", "ab".repeat(31)),
        ] {
            let t = Taken {
                manifest_sha256: h,
                ..good()
            };
            refused(t, WANT, "not 64 hexadecimal digits");
        }
    }

    #[test]
    fn a_node_version_other_than_the_installed_one_is_refused() {
        for v in ["0", "", "14.2.1"] {
            let t = Taken {
                node_version: v.into(),
                ..good()
            };
            refused(t, WANT, "but FM installed \"14.2.0\"");
        }
        let none = Expected {
            node_version: None,
            ..WANT
        };
        refused(good(), none, "installed no node version");
    }

    #[test]
    fn negative_sizes_are_refused() {
        refused(
            Taken {
                archive_size: -1,
                ..good()
            },
            WANT,
            "negative archiveSize",
        );
        refused(
            Taken {
                data_bytes: -5,
                ..good()
            },
            WANT,
            "negative dataBytes",
        );
        refused(
            Taken {
                files: -1,
                ..good()
            },
            WANT,
            "negative files",
        );
    }

    #[test]
    fn the_agents_creation_time_is_not_read() {
        let t: Taken = serde_json::from_value(serde_json::json!({
            "nodeVersion": "14.2.0",
            "createdAtMs": 4102444800000_i64,
            "archiveSize": 1, "dataBytes": 1, "files": 1,
            "manifestSha256": "ab".repeat(32),
        }))
        .unwrap();
        assert_eq!(
            check_report(&t, WANT).unwrap().created_at,
            WANT.now_ms,
            "FM's clock, not the agent's year 2100"
        );
    }
}
