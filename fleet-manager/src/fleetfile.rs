//! The CLI's side of plan and apply (`fleet-manager plan|apply`): the fleet
//! file read from YAML, its secret references (`{fromEnv: NAME}`,
//! `{fromFile: PATH}`) resolved only to be sent, never written in a saved
//! plan nor printed, and the plan computed and applied by a running FM.

use crate::error::{Error, Result};
use crate::model::fleet::{Applied, FleetSpec, Plan};
use crate::model::setup_action::SetupAction;
use crate::remote::Remote;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What `plan --out` writes: the file as written (references, not
/// secrets), where its relative paths start, and the plan.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedPlan {
    pub version: u32,
    pub base_dir: PathBuf,
    pub fleet: Value,
    pub plan: Plan,
}

const SAVED_VERSION: u32 = 1;

/// A fleet file as written, and the directory its relative paths start at.
pub fn read_file(path: &Path) -> Result<(Value, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let v: Value = serde_norway::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let v = if v.is_null() {
        Value::Object(Map::new())
    } else {
        v
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    Ok((v, base))
}

/// A reference to a secret: `{fromEnv: NAME}` or `{fromFile: PATH}`.
fn reference(v: &Value) -> Option<(&str, &str)> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, v) = m.iter().next()?;
    match (k.as_str(), v.as_str()) {
        ("fromEnv", Some(name)) => Some(("fromEnv", name)),
        ("fromFile", Some(path)) => Some(("fromFile", path)),
        _ => None,
    }
}

/// The file with every reference replaced by what it names, read as a
/// fleet; a secret written in the file itself is refused.
pub fn resolve(file: &Value, base: &Path) -> Result<FleetSpec> {
    let mut v = file.clone();
    fill(&mut v, base, "")?;
    refuse_literal_secrets(file, &v)?;
    serde_path_to_error::deserialize(v)
        .map_err(|e| Error::invalid(format!("fleet file: {}: {}", e.path(), e.inner())))
}

fn fill(v: &mut Value, base: &Path, at: &str) -> Result<()> {
    if let Some((kind, what)) = reference(v) {
        let value = match kind {
            "fromEnv" => std::env::var(what).map_err(|_| {
                Error::invalid(format!(
                    "{at}: the environment variable {what} is not set (or not UTF-8)"
                ))
            })?,
            _ => {
                let p = base.join(what);
                let s = std::fs::read_to_string(&p)
                    .map_err(|e| Error::invalid(format!("{at}: {}: {e}", p.display())))?;
                s.strip_suffix('\n').unwrap_or(&s).to_string()
            }
        };
        *v = Value::String(value);
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                fill(x, base, &join(at, k))?;
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                fill(x, base, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

/// The template fields that hold secrets must be references in the file.
fn refuse_literal_secrets(raw: &Value, resolved: &Value) -> Result<()> {
    let literal = |v: Option<&Value>| v.is_some_and(|v| !v.is_null() && reference(v).is_none());
    let refuse = |at: String| {
        Err(Error::invalid(format!(
            "{at}: a secret is written as a reference, {{fromEnv: NAME}} or {{fromFile: PATH}}, never in the file"
        )))
    };
    let empty = Vec::new();
    let list = |v: &Value, k: &str| -> Vec<Value> {
        v.get(k).and_then(Value::as_array).unwrap_or(&empty).clone()
    };
    for (i, t) in list(raw, "templates").iter().enumerate() {
        if literal(t.get("dataikuAwsSecretAccessKey")) {
            return refuse(format!("templates[{i}].dataikuAwsSecretAccessKey"));
        }
        let resolved_actions = resolved["templates"][i]["setupActions"].clone();
        for (j, a) in list(t, "setupActions").iter().enumerate() {
            let Ok(action) = serde_json::from_value::<SetupAction>(resolved_actions[j].clone())
            else {
                continue; // FM names what is wrong with it.
            };
            for key in action.secret_params() {
                if literal(a.get("params").and_then(|p| p.get(*key))) {
                    return refuse(format!("templates[{i}].setupActions[{j}].params.{key}"));
                }
            }
        }
    }
    Ok(())
}

/// `fleet-manager plan`: prints the plan (or its JSON), saves it when
/// asked; the exit status is 0 without changes, 2 with.
pub async fn plan(remote: &Remote, file: &Path, out: Option<&Path>, json: bool) -> Result<u8> {
    let (raw, base) = read_file(file)?;
    let fleet = resolve(&raw, &base)?;
    let body = serde_json::to_value(&fleet).map_err(Error::internal)?;
    let answer = remote
        .call(reqwest::Method::POST, "/fleet/plan", Some(body))
        .await?;
    let plan: Plan =
        serde_json::from_value(answer).map_err(|e| Error::internal(format!("FM's plan: {e}")))?;
    if json {
        emit(&(serde_json::to_string_pretty(&plan).map_err(Error::internal)? + "\n"))?;
    } else {
        emit(&plan.render())?;
    }
    if let Some(out) = out {
        let saved = SavedPlan {
            version: SAVED_VERSION,
            base_dir: base,
            fleet: raw,
            plan: plan.clone(),
        };
        write_private(
            out,
            &serde_json::to_vec_pretty(&saved).map_err(Error::internal)?,
        )?;
        eprintln!(
            "Saved the plan to {}; `fleet-manager apply {}` makes exactly these changes, or refuses if the fleet changed.",
            out.display(),
            out.display()
        );
    }
    Ok(if plan.summary.changes() == 0 { 0 } else { 2 })
}

/// `fleet-manager apply PLAN`: makes a saved plan's changes if the fleet
/// is as the plan read it, then follows the rollout and deletions to their
/// end unless `no_wait`.
pub async fn apply(remote: &Remote, saved: &Path, no_wait: bool, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(saved)
        .map_err(|e| Error::invalid(format!("{}: {e}", saved.display())))?;
    let s: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a plan saved by `fleet-manager plan --out`: {e}",
            saved.display()
        ))
    })?;
    if s.version != SAVED_VERSION {
        return Err(Error::invalid(format!(
            "{}: a plan of version {} (this FM reads {SAVED_VERSION}): make a new plan",
            saved.display(),
            s.version
        )));
    }
    let fleet = resolve(&s.fleet, &s.base_dir)?;
    let body = serde_json::json!({"fleet": fleet, "fingerprint": s.plan.fingerprint});
    let answer = remote
        .call(reqwest::Method::POST, "/fleet/apply", Some(body))
        .await?;
    let applied: Applied = serde_json::from_value(answer.clone())
        .map_err(|e| Error::internal(format!("FM's answer: {e}")))?;
    if !json {
        for c in &applied.plan.changes {
            eprintln!(
                "{} {} \"{}\" {}",
                c.action.symbol(),
                c.kind.name(),
                c.label,
                c.id.as_deref().unwrap_or_default()
            );
        }
        eprintln!("{}", applied.plan.summary.line());
    }
    let mut failed = Vec::new();
    if !no_wait {
        if let Some(id) = &applied.rollout_id {
            let r = remote
                .call(reqwest::Method::GET, &format!("/rollouts/{id}"), None)
                .await?;
            if let Err(e) = remote.wait_rollout(r).await {
                failed.push(e.message());
            }
        }
        for job in &applied.job_ids {
            let f = serde_json::json!({"jobId": job, "alive": true});
            if let Err(e) = remote.wait(f).await {
                failed.push(e.message());
            }
        }
    }
    if json {
        emit(&(serde_json::to_string_pretty(&answer).map_err(Error::internal)? + "\n"))?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "the changes are made, but: {}",
            failed.join("; ")
        )))
    }
}

/// Writes the command's output on stdout.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::internal)
}

/// Writes a file only its owner reads.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_resolved_and_literal_secrets_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "from-a-file\n").unwrap();
        let raw = json!({"templates": [{"label": "t",
            "dataikuAwsSecretAccessKey": {"fromEnv": "PATH"},
            "setupActions": [{"type": "ADD_SSH_KEY", "params": {"sshKey": {"fromFile": "key"}}}]}]});
        let f = resolve(&raw, dir.path()).unwrap();
        assert_eq!(
            f.templates[0]["dataikuAwsSecretAccessKey"],
            std::env::var("PATH").unwrap()
        );
        assert_eq!(
            f.templates[0]["setupActions"][0]["params"]["sshKey"],
            "from-a-file"
        );

        let literal = json!({"templates": [{"label": "t", "dataikuAwsSecretAccessKey": "plain"}]});
        let e = resolve(&literal, dir.path()).unwrap_err().message();
        assert!(
            e.starts_with(
                "templates[0].dataikuAwsSecretAccessKey: a secret is written as a reference"
            ),
            "{e}"
        );
        let literal = json!({"templates": [{"label": "t",
            "setupActions": [{"type": "ADD_SSH_KEY", "params": {"sshKey": "ssh-ed25519 AAAA"}}]}]});
        let e = resolve(&literal, dir.path()).unwrap_err().message();
        assert!(
            e.starts_with("templates[0].setupActions[0].params.sshKey"),
            "{e}"
        );

        let missing = json!({"templates": [{"label": "t",
            "dataikuAwsSecretAccessKey": {"fromEnv": "FLEETFILE_TEST_UNSET"}}]});
        let e = resolve(&missing, dir.path()).unwrap_err().message();
        assert_eq!(
            e,
            "templates[0].dataikuAwsSecretAccessKey: the environment variable FLEETFILE_TEST_UNSET is not set (or not UTF-8)"
        );
        let unknown = json!({"networks": [], "extra": 1});
        let e = resolve(&unknown, dir.path()).unwrap_err().message();
        assert!(e.contains("unknown field `extra`"), "{e}");
    }
}
