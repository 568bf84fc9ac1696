//! RunSetupActions: the platform's setup actions, applied so that running
//! them twice changes nothing (managed blocks replaced as a whole, keys
//! added once, files replaced atomically).

use super::{Ctx, HashingFile, HttpAuth, Outcome, Progress, find_on_path, http_download};
use crate::beneath::Beneath;
use crate::config::Config;
use crate::config::DownloadLimits;
use crate::fsutil;
use crate::nodeuser;
use crate::proc;
use fm_proto::agent::RunSetupActions;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Longest an ansible run may take.
pub const ANSIBLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest unpacking a driver archive may take.
const UNPACK_TIMEOUT: Duration = Duration::from_secs(600);

/// The command.
pub async fn run(ctx: &Ctx, p: &mut Progress, req: &RunSetupActions) -> Outcome {
    let n = req.actions.len();
    p.line(format!("{n} setup actions for stage {}", req.stage))
        .await;
    let mut report = Vec::with_capacity(n);
    for (i, a) in req.actions.iter().enumerate() {
        let kind = a.r#type.as_str();
        let label = format!("setup action {}/{n} {kind}", i + 1);
        let params: Value = if a.params_json.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&a.params_json)
                .map_err(|e| format!("{label} failed: its params are not JSON: {e}"))?
        };
        register_secrets(p, &params);
        let percent = ((i + 1) * 100 / n.max(1)) as u32;
        let outcome = match kind {
            "ADD_AUTHORIZED_KEY" => add_authorized_key(&ctx.cfg, p, &params).await,
            "ADD_ENV_VARIABLES" => add_env_variables(&ctx.cfg, p, &params).await,
            "ADD_PROPERTIES" => add_properties(&ctx.cfg, p, &params).await,
            "SETUP_PROXY" => setup_proxy(&ctx.cfg, p, &params).await,
            "ADD_CA_TO_TRUSTSTORE" => add_ca(&ctx.cfg, p, &params).await,
            "INSTALL_JDBC_DRIVER" => install_jdbc_driver(&ctx.cfg, p, &params).await,
            "RUN_ANSIBLE_TASKS" => run_ansible(&ctx.cfg, p, &params).await,
            _ => {
                p.step(
                    format!("setup action {kind}: skipped (not applicable on this platform)"),
                    percent,
                )
                .await;
                report.push(json!({ "type": kind, "status": "skipped" }));
                continue;
            }
        };
        match outcome {
            Ok(()) => {
                p.step(format!("{label}: done"), percent).await;
                report.push(json!({ "type": kind, "status": "done" }));
            }
            Err(e) => return Err(format!("{label} failed: {e}")),
        }
    }
    Ok(json!({ "actions": report }))
}

/// Masks credentials the params carry in every line and error.
fn register_secrets(p: &mut Progress, params: &Value) {
    if let Some(pw) = params.get("password").and_then(Value::as_str) {
        p.add_secret(pw);
    }
    for (_, v) in headers(params) {
        p.add_secret(&v);
    }
    // A URL's credentials and query values (tokens, signatures) are masked
    // wherever they show, in the agent's lines and in tools' output.
    if let Some(url) = params.get("url").and_then(Value::as_str) {
        for s in super::url_secrets(url) {
            p.add_secret(&s);
        }
    }
}

fn opt_str<'a>(params: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("parameter {key} must be a string")),
    }
}

fn req_str<'a>(params: &'a Value, key: &str) -> Result<&'a str, String> {
    opt_str(params, key)?.ok_or_else(|| format!("parameter {key} is missing"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `[{key, value}]` (or an object `{key: value}`) as pairs.
fn key_values(params: &Value, field: &str) -> Result<Vec<(String, String)>, String> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|it| {
                let k = it.get("key").and_then(Value::as_str);
                let v = it.get("value").map_or(Some(String::new()), scalar);
                match (k, v) {
                    (Some(k), Some(v)) => Ok((k.to_owned(), v)),
                    _ => Err(format!("{field} must be a list of {{key, value}}")),
                }
            })
            .collect(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                scalar(v)
                    .map(|v| (k.clone(), v))
                    .ok_or_else(|| format!("{field}.{k} must be a string"))
            })
            .collect(),
        Some(_) => Err(format!("{field} must be a list of {{key, value}}")),
    }
}

fn headers(params: &Value) -> Vec<(String, String)> {
    match params.get("headers") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|it| {
                let k = it.get("key").or_else(|| it.get("name"))?.as_str()?;
                Some((k.to_owned(), scalar(it.get("value")?)?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Single-quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `content` with the block tagged `tag` replaced by `body` (in place), or
/// appended when absent.
pub fn with_managed_block(content: &str, tag: &str, body: &[String]) -> String {
    let begin = format!("# BEGIN fm-agent {tag}");
    let end = format!("# END fm-agent {tag}");
    let mut block = vec![begin.clone()];
    block.extend(body.iter().cloned());
    block.push(end.clone());
    let mut out: Vec<String> = Vec::new();
    let (mut inside, mut placed) = (false, false);
    for line in content.lines() {
        if inside {
            inside = line.trim_end() != end;
            continue;
        }
        if line.trim_end() == begin {
            inside = true;
            if !placed {
                out.extend(block.iter().cloned());
                placed = true;
            }
            continue;
        }
        out.push(line.to_owned());
    }
    if !placed {
        out.extend(block);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Rewrites the managed block `tag` of `rel` under `at` (created if
/// missing), never following a symlink; true when the file changed.
fn update_block(at: &Beneath, rel: &Path, tag: &str, body: &[String]) -> Result<bool, String> {
    let shown = at.shown(rel);
    if let Some(dir) = rel.parent().filter(|d| !d.as_os_str().is_empty()) {
        at.dir(dir, Some(0o755))
            .map_err(|e| format!("can't create {}: {e}", at.shown(dir).display()))?;
    }
    let current = at
        .read(rel)
        .map_err(|e| format!("can't read {}: {e}", shown.display()))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let next = with_managed_block(&current, tag, body);
    at.write_if_changed(rel, next.as_bytes(), 0o644)
        .map_err(|e| format!("can't write {}: {e}", shown.display()))
}

fn data(cfg: &Config) -> Result<Beneath, String> {
    Beneath::open(&cfg.data_dir).map_err(|e| format!("can't open the data dir: {e}"))
}

fn home(cfg: &Config) -> Result<Beneath, String> {
    Beneath::open(&cfg.home_dir).map_err(|e| format!("can't open the home dir: {e}"))
}

async fn note_change(p: &mut Progress, path: &Path, changed: bool) {
    let what = if changed {
        "updated"
    } else {
        "already up to date"
    };
    p.line(format!("{} {what}", path.display())).await;
}

/// `bin/env-site.sh`, relative to the data dir.
const ENV_SITE: &str = "bin/env-site.sh";

fn check_single_line(what: &str, s: &str) -> Result<(), String> {
    if s.contains(['\n', '\r']) {
        Err(format!("{what} may not contain a line break"))
    } else {
        Ok(())
    }
}

async fn add_authorized_key(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let key = req_str(params, "sshKey")?.trim();
    check_single_line("sshKey", key)?;
    let home = home(cfg)?;
    let ssh = Path::new(".ssh");
    home.dir(ssh, Some(0o700))
        .map_err(|e| format!("can't create {}: {e}", home.shown(ssh).display()))?;
    home.chmod(ssh, 0o700)
        .map_err(|e| format!("{}: {e}", home.shown(ssh).display()))?;
    let file = Path::new(".ssh/authorized_keys");
    let shown = home.shown(file);
    let current = home
        .read(file)
        .map_err(|e| format!("can't read {}: {e}", shown.display()))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if current.lines().any(|l| l.trim() == key) {
        p.line("ssh key already authorized").await;
    } else {
        let mut next = current;
        if !next.is_empty() && !next.ends_with('\n') {
            next.push('\n');
        }
        next.push_str(key);
        next.push('\n');
        home.write(file, next.as_bytes(), 0o600)
            .map_err(|e| format!("can't write {}: {e}", shown.display()))?;
        p.line("ssh key added").await;
    }
    home.chmod(file, 0o600)
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    Ok(())
}

fn env_name_ok(k: &str) -> bool {
    let mut c = k.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

async fn add_env_variables(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let vars = key_values(params, "variables")?;
    let mut lines = Vec::with_capacity(vars.len());
    for (k, v) in &vars {
        if !env_name_ok(k) {
            return Err(format!("{k:?} is not a valid environment variable name"));
        }
        check_single_line(&format!("the value of {k}"), v)?;
        lines.push(format!("export {k}={}", shell_quote(v)));
    }
    let data = data(cfg)?;
    let rel = Path::new(ENV_SITE);
    let changed = update_block(&data, rel, "ADD_ENV_VARIABLES", &lines)?;
    note_change(p, &data.shown(rel), changed).await;
    Ok(())
}

async fn add_properties(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let props = key_values(params, "properties")?;
    let rel = opt_str(params, "file")?.unwrap_or("config/dip.properties");
    let rel = fsutil::safe_relative(rel)?;
    let mut lines = Vec::with_capacity(props.len());
    for (k, v) in &props {
        if k.is_empty()
            || k.contains(['=', ':', '\\', ' ', '\t', '\n', '\r', '\x0b', '\x0c'])
            || k.starts_with(['#', '!'])
        {
            return Err(format!("{k:?} is not a usable property name"));
        }
        check_single_line(&format!("property {k}"), &format!("{k}{v}"))?;
        lines.push(format!("{k}={}", property_value(v)));
    }
    let data = data(cfg)?;
    let changed = update_block(&data, rel, "ADD_PROPERTIES", &lines)?;
    note_change(p, &data.shown(rel), changed).await;
    Ok(())
}

async fn setup_proxy(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let mut lines = Vec::new();
    for (key, lower, upper) in [
        ("httpProxy", "http_proxy", "HTTP_PROXY"),
        ("httpsProxy", "https_proxy", "HTTPS_PROXY"),
        ("noProxy", "no_proxy", "NO_PROXY"),
    ] {
        if let Some(v) = opt_str(params, key)? {
            check_single_line(key, v)?;
            lines.push(format!("export {lower}={}", shell_quote(v)));
            lines.push(format!("export {upper}={}", shell_quote(v)));
        }
    }
    let data = data(cfg)?;
    let rel = Path::new(ENV_SITE);
    let changed = update_block(&data, rel, "SETUP_PROXY", &lines)?;
    note_change(p, &data.shown(rel), changed).await;
    Ok(())
}

async fn add_ca(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let cert = req_str(params, "cert")?.trim();
    if !cert.starts_with("-----BEGIN CERTIFICATE-----")
        || !cert.ends_with("-----END CERTIFICATE-----")
    {
        return Err("cert must be one PEM certificate".into());
    }
    let pem = format!("{cert}\n");
    let home = home(cfg)?;
    let dir = Path::new(".fm/ca-certificates");
    home.dir(dir, Some(0o755))
        .map_err(|e| format!("can't create {}: {e}", home.shown(dir).display()))?;
    let name = format!("{}.pem", &hex::encode(Sha256::digest(pem.as_bytes()))[..16]);
    let file = dir.join(&name);
    let added = home
        .write_if_changed(&file, pem.as_bytes(), 0o644)
        .map_err(|e| format!("can't write {}: {e}", home.shown(&file).display()))?;
    let certs: Vec<String> = home
        .names(dir)
        .map_err(|e| format!("can't list {}: {e}", home.shown(dir).display()))?
        .into_iter()
        .filter(|n| n.ends_with(".pem") && !n.starts_with('.'))
        .collect();
    let mut bundle = String::new();
    for c in &certs {
        let rel = dir.join(c);
        let s = home
            .read(&rel)
            .map_err(|e| format!("can't read {}: {e}", home.shown(&rel).display()))?
            .unwrap_or_default();
        bundle.push_str(String::from_utf8_lossy(&s).trim_end());
        bundle.push('\n');
    }
    let bundle_path = Path::new(".fm/ca-bundle.pem");
    let changed = home
        .write_if_changed(bundle_path, bundle.as_bytes(), 0o644)
        .map_err(|e| format!("can't write {}: {e}", home.shown(bundle_path).display()))?;
    p.line(format!(
        "CA certificate {name} {}; bundle of {} certificates {}",
        if added { "added" } else { "already present" },
        certs.len(),
        if changed { "regenerated" } else { "unchanged" }
    ))
    .await;
    Ok(())
}

/// A property value as written: an odd run of backslashes at its end
/// would join the next line (Java properties), so one more is added.
fn property_value(v: &str) -> String {
    let trailing = v.len() - v.trim_end_matches('\\').len();
    if trailing % 2 == 1 {
        format!("{v}\\")
    } else {
        v.to_owned()
    }
}

fn paths_in_archive(params: &Value) -> Result<Vec<String>, String> {
    match params.get("pathsInArchive") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "pathsInArchive must be a list of strings".to_owned())
            })
            .collect(),
        Some(_) => Err("pathsInArchive must be a list of strings".into()),
    }
}

async fn install_jdbc_driver(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let url = req_str(params, "url")?;
    let db_type = req_str(params, "dbType")?;
    if !db_type
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || db_type.starts_with('.')
    {
        return Err(format!("dbType {db_type:?} is not a plain name"));
    }
    let default_sub = format!("lib/jdbc/{db_type}");
    let sub = fsutil::safe_relative(opt_str(params, "subpathInDatadir")?.unwrap_or(&default_sub))?;
    let data = data(cfg)?;
    data.dir(sub, Some(0o755))
        .map_err(|e| format!("can't create {}: {e}", data.shown(sub).display()))?;
    let file_name = super::url_file_name(url)
        .ok_or_else(|| format!("url {} does not end in a file name", super::redact_url(url)))?;
    // Fetched into the agent's own dir: nothing the node does redirects it.
    let downloads = cfg.state_dir.join("downloads");
    fsutil::create_private_dir(&downloads)
        .map_err(|e| format!("can't create {}: {e}", downloads.display()))?;
    let tmp = fsutil::temp_sibling(&downloads.join(&file_name), "download");
    let fetched = fetch_driver(params, url, &cfg.downloads, &tmp, p).await;
    if let Err(e) = fetched {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let paths = paths_in_archive(params)?;
    let lower = file_name.to_ascii_lowercase();
    let is_zip = lower.ends_with(".zip");
    let is_tar = lower.ends_with(".tar.gz") || lower.ends_with(".tgz");
    let archive = !paths.is_empty() && (is_zip || is_tar);
    // The file goes in under its name, or, for an archive to unpack, under
    // a temporary one.
    let placed = if archive {
        sub.join(format!(
            ".{file_name}.unpack-{:016x}",
            rand::random::<u64>()
        ))
    } else {
        sub.join(&file_name)
    };
    let copied = data.copy_in(&tmp, &placed);
    let _ = std::fs::remove_file(&tmp);
    copied.map_err(|e| format!("can't place {file_name}: {e}"))?;
    if !archive {
        p.line(format!("installed {}", data.shown(&placed).display()))
            .await;
        return Ok(());
    }
    let result = unpack(
        cfg,
        &data.shown(&placed),
        is_zip,
        &paths,
        &data.shown(sub),
        p,
    )
    .await;
    let _ = data.remove_file(&placed);
    result
}

async fn fetch_driver(
    params: &Value,
    url: &str,
    limits: &DownloadLimits,
    tmp: &Path,
    p: &mut Progress,
) -> Result<(), String> {
    let shown = super::redact_url(url);
    p.line(format!("downloading {shown}")).await;
    if let Some(path) = url.strip_prefix("file://") {
        let (from, to) = (PathBuf::from(path), tmp.to_path_buf());
        tokio::task::spawn_blocking(move || fsutil::copy_hashing(&from, &to))
            .await
            .map_err(|e| format!("background task: {e}"))?
            .map_err(|e| format!("can't copy {shown}: {e}"))?;
        return Ok(());
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "unsupported url {shown}: use file:// or http(s)://"
        ));
    }
    let auth = HttpAuth {
        headers: headers(params),
        basic: opt_str(params, "username")?.map(|u| {
            (
                u.to_owned(),
                opt_str(params, "password")
                    .ok()
                    .flatten()
                    .unwrap_or("")
                    .to_owned(),
            )
        }),
    };
    let mut out = HashingFile::create(tmp).await?;
    http_download(url, &auth, limits, &mut out, p)
        .await
        .map_err(|e| e.msg)?;
    out.finish().await.map(|_| ())
}

/// What unpacking runs, as the node's user: a scratch dir beside the
/// target, the archive's `paths` extracted there and each moved (by its
/// base name) into the target, replacing what is there.
const UNPACK_SCRIPT: &str = r#"set -eu
archive=$1; scratch=$2; target=$3; kind=$4; shift 4
trap 'rm -rf -- "$scratch"' EXIT
mkdir -m 0700 -- "$scratch"
if [ "$kind" = zip ]; then
    unzip -o -q "$archive" "$@" -d "$scratch"
else
    tar --no-same-owner -xzf "$archive" -C "$scratch" -- "$@"
fi
for p in "$@"; do
    p=${p%/}; base=${p##*/}
    if [ ! -e "$scratch/$p" ]; then echo "$p is not in the archive" >&2; exit 3; fi
    if [ -d "$scratch/$p" ] && [ -d "$target/$base" ]; then rm -rf -- "$target/$base"; fi
    mv -f -T -- "$scratch/$p" "$target/$base"
    echo "installed $target/$base"
done
"#;

/// Extracts `paths` of `archive` into `target_dir`, as the node's user:
/// the tree belongs to the node, so whatever it planted there, the
/// unpacking can only do what the node could.
async fn unpack(
    cfg: &Config,
    archive: &Path,
    is_zip: bool,
    paths: &[String],
    target_dir: &Path,
    p: &mut Progress,
) -> Result<(), String> {
    for path in paths {
        fsutil::safe_relative(path)?;
        if path.starts_with('-') {
            return Err(format!("pathsInArchive {path:?} may not start with '-'"));
        }
    }
    let scratch = fsutil::temp_sibling(&target_dir.join("archive"), "extract");
    let mut cmd = nodeuser::command(cfg, "sh")?;
    cmd.arg("-c")
        .arg(UNPACK_SCRIPT)
        .arg("unpack")
        .arg(archive)
        .arg(&scratch)
        .arg(target_dir)
        .arg(if is_zip { "zip" } else { "tar" })
        .args(paths)
        .current_dir(target_dir);
    let tool = if is_zip { "unzip" } else { "tar" };
    let done = proc::run_streaming(cmd, UNPACK_TIMEOUT, p).await?;
    if done.success() {
        Ok(())
    } else {
        Err(done.failure(&format!("unpacking with {tool}")))
    }
}

async fn run_ansible(cfg: &Config, p: &mut Progress, params: &Value) -> Result<(), String> {
    let Some(playbook_bin) = find_on_path("ansible-playbook") else {
        return Err(
            "RUN_ANSIBLE_TASKS needs ansible, which is not installed on this instance".into(),
        );
    };
    let tasks = match params.get("ansibleTasks") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v @ (Value::Array(_) | Value::Object(_))) => v.to_string(),
        _ => return Err("parameter ansibleTasks is missing".into()),
    };
    let dir = cfg.state_dir.join("ansible");
    fsutil::create_private_dir(&dir).map_err(|e| format!("can't create {}: {e}", dir.display()))?;
    let playbook = fsutil::temp_sibling(&dir.join("playbook.yml"), "run");
    std::fs::write(&playbook, render_playbook(&tasks))
        .and_then(|()| std::fs::set_permissions(&playbook, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| format!("can't write the playbook: {e}"))?;
    let mut cmd = Command::new(playbook_bin);
    cmd.arg("-i")
        .arg("localhost,")
        .arg(&playbook)
        .current_dir(&dir)
        .env("ANSIBLE_NOCOLOR", "1");
    let done = proc::run_streaming(cmd, ANSIBLE_TIMEOUT, p).await;
    let _ = std::fs::remove_file(&playbook);
    let done = done?;
    if done.success() {
        Ok(())
    } else {
        Err(done.failure("ansible-playbook"))
    }
}

/// A local playbook running `tasks` (YAML, indented under `tasks:`).
pub fn render_playbook(tasks: &str) -> String {
    let mut s =
        String::from("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n");
    for line in tasks.lines() {
        if line.trim().is_empty() {
            s.push('\n');
        } else {
            s.push_str("    ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tests_support::ctx;
    use crate::session::Link;
    use fm_proto::agent::SetupAction;

    fn action(kind: &str, params: Value) -> SetupAction {
        SetupAction {
            r#type: kind.into(),
            params_json: params.to_string(),
        }
    }

    #[test]
    fn a_managed_block_is_replaced_in_place_and_idempotent() {
        let body = vec!["export A='1'".to_owned()];
        let once = with_managed_block("#!/bin/bash\nexport X=1\n", "T", &body);
        assert_eq!(
            once,
            "#!/bin/bash\nexport X=1\n# BEGIN fm-agent T\nexport A='1'\n# END fm-agent T\n"
        );
        assert_eq!(with_managed_block(&once, "T", &body), once);
        let edited = format!("{once}export Y=2\n");
        let changed = with_managed_block(&edited, "T", &["export B='2'".to_owned()]);
        assert_eq!(
            changed,
            "#!/bin/bash\nexport X=1\n# BEGIN fm-agent T\nexport B='2'\n# END fm-agent T\nexport Y=2\n"
        );
        let other = with_managed_block(&changed, "U", &[]);
        assert!(other.contains("# BEGIN fm-agent T\nexport B='2'\n# END fm-agent T\n"));
        assert!(other.ends_with("# BEGIN fm-agent U\n# END fm-agent U\n"));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME `x`"), "'$HOME `x`'");
    }

    #[test]
    fn the_playbook_indents_the_tasks_under_a_local_play() {
        let pb = render_playbook("- name: hi\n  debug:\n    msg: hello\n");
        assert_eq!(
            pb,
            "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    - name: hi\n      debug:\n        msg: hello\n"
        );
    }

    #[test]
    fn a_trailing_backslash_does_not_swallow_the_next_property() {
        assert_eq!(property_value("x\\"), "x\\\\");
        assert_eq!(property_value("x\\\\"), "x\\\\");
        assert_eq!(property_value("plain"), "plain");
    }

    #[tokio::test]
    async fn property_names_with_spaces_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let req = RunSetupActions {
            stage: "after_install".into(),
            actions: vec![action(
                "ADD_PROPERTIES",
                json!({"properties": [{"key": "a b", "value": "c"}]}),
            )],
        };
        let mut p = Progress::new("c", Link::default());
        let e = run(&ctx, &mut p, &req).await.unwrap_err();
        assert!(e.contains("not a usable property name"), "{e}");
    }

    /// The review's attacks by the node's user: `bin` made a symlink to a
    /// dir elsewhere, and `env-site.sh` a symlink to a secret file. The
    /// agent neither writes through the first nor reads the second.
    #[tokio::test]
    async fn env_actions_never_follow_a_symlink_the_node_planted() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let req = RunSetupActions {
            stage: "after_install".into(),
            actions: vec![action(
                "ADD_ENV_VARIABLES",
                json!({"variables": [{"key": "FOO", "value": "1"}]}),
            )],
        };
        let victim = d.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::create_dir_all(&ctx.cfg.data_dir).unwrap();
        std::os::unix::fs::symlink(&victim, ctx.cfg.data_dir.join("bin")).unwrap();
        let mut p = Progress::new("c", Link::default());
        let e = run(&ctx, &mut p, &req).await.unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert!(!victim.join("env-site.sh").exists());

        std::fs::remove_file(ctx.cfg.data_dir.join("bin")).unwrap();
        std::fs::create_dir(ctx.cfg.data_dir.join("bin")).unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "S3CRET").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let site = ctx.cfg.data_dir.join("bin/env-site.sh");
        std::os::unix::fs::symlink(&secret, &site).unwrap();
        let e = run(&ctx, &mut p, &req).await.unwrap_err();
        assert!(e.contains("can't read"), "{e}");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "S3CRET");
        assert!(
            std::fs::symlink_metadata(&site)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[tokio::test]
    async fn running_the_actions_twice_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let req = RunSetupActions {
            stage: "after_install".into(),
            actions: vec![
                action(
                    "ADD_AUTHORIZED_KEY",
                    json!({"sshKey": "ssh-ed25519 AAAA test@x"}),
                ),
                action(
                    "ADD_ENV_VARIABLES",
                    json!({"variables": [{"key": "FOO", "value": "it's"}]}),
                ),
                action(
                    "ADD_PROPERTIES",
                    json!({"properties": [{"key": "a.b", "value": "c"}]}),
                ),
                action("SETUP_PROXY", json!({"httpsProxy": "http://proxy:3128"})),
                action("SOMETHING_ELSE", json!({})),
            ],
        };
        let mut p = Progress::new("c", Link::default());
        run(&ctx, &mut p, &req).await.unwrap();
        let snapshot = |d: &Path| {
            [
                "home/.ssh/authorized_keys",
                "data/bin/env-site.sh",
                "data/config/dip.properties",
            ]
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap())
        };
        let first = snapshot(d.path());
        run(&ctx, &mut p, &req).await.unwrap();
        assert_eq!(snapshot(d.path()), first);
        assert_eq!(first[0], "ssh-ed25519 AAAA test@x\n");
        assert!(first[1].contains("export FOO='it'\\''s'\n"));
        assert!(first[1].contains(
            "export https_proxy='http://proxy:3128'\nexport HTTPS_PROXY='http://proxy:3128'\n"
        ));
        assert!(first[2].contains("# BEGIN fm-agent ADD_PROPERTIES\na.b=c\n"));
        let lines = p.lines();
        assert!(lines.contains(&"setup action 2/5 ADD_ENV_VARIABLES: done".to_owned()));
        assert!(lines.contains(
            &"setup action SOMETHING_ELSE: skipped (not applicable on this platform)".to_owned()
        ));
    }

    #[tokio::test]
    async fn the_first_failing_action_fails_the_command_and_stops() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let req = RunSetupActions {
            stage: "s".into(),
            actions: vec![
                action(
                    "ADD_ENV_VARIABLES",
                    json!({"variables": [{"key": "1BAD", "value": "x"}]}),
                ),
                action("ADD_AUTHORIZED_KEY", json!({"sshKey": "ssh-ed25519 AAAA"})),
            ],
        };
        let mut p = Progress::new("c", Link::default());
        let e = run(&ctx, &mut p, &req).await.unwrap_err();
        assert!(
            e.starts_with("setup action 1/2 ADD_ENV_VARIABLES failed:"),
            "{e}"
        );
        assert!(!d.path().join("home/.ssh/authorized_keys").exists());
    }

    #[tokio::test]
    async fn ca_certificates_build_a_sorted_bundle() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let mut p = Progress::new("c", Link::default());
        for body in ["BBBB", "AAAA", "BBBB"] {
            let cert = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----");
            add_ca(&ctx.cfg, &mut p, &json!({ "cert": cert }))
                .await
                .unwrap();
        }
        let dir = d.path().join("home/.fm/ca-certificates");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let bundle = std::fs::read_to_string(d.path().join("home/.fm/ca-bundle.pem")).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[tokio::test]
    async fn a_jdbc_driver_from_a_file_url_lands_in_lib_jdbc() {
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let src = d.path().join("driver-1.0.jar");
        std::fs::write(&src, b"jar bytes").unwrap();
        let mut p = Progress::new("c", Link::default());
        let params = json!({"url": format!("file://{}", src.display()), "dbType": "postgresql"});
        for _ in 0..2 {
            install_jdbc_driver(&ctx.cfg, &mut p, &params)
                .await
                .unwrap();
        }
        let dir = d.path().join("data/lib/jdbc/postgresql");
        assert_eq!(
            std::fs::read(dir.join("driver-1.0.jar")).unwrap(),
            b"jar bytes"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[tokio::test]
    async fn ansible_tasks_need_ansible() {
        if find_on_path("ansible-playbook").is_some() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ctx = ctx(d.path());
        let mut p = Progress::new("c", Link::default());
        let e = run_ansible(
            &ctx.cfg,
            &mut p,
            &json!({"ansibleTasks": "- debug: msg=hi"}),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "RUN_ANSIBLE_TASKS needs ansible, which is not installed on this instance"
        );
    }
}
