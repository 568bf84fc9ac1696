//! InstallNode: fetch the kit (unless a verified copy is there), check its
//! SHA-256 before any use, extract it, then install, upgrade or do nothing
//! depending on the version already in the data dir.

use super::{Ctx, FetchError, HashingFile, HttpAuth, Outcome, Progress, http_download, redact_url};
use crate::proc;
use crate::session::{Backoff, status_text};
use crate::{fsutil, nodeuser};
use fm_proto::agent::agent_service_client::AgentServiceClient;
use fm_proto::agent::{FetchKitRequest, InstallNode};
use serde_json::{Value, json};
use std::cmp::Ordering;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Longest the installer may run.
pub const INSTALLER_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// How long fetching a kit is retried after transient failures (FM
/// restarting, a network hiccup) before the command fails.
pub const FETCH_RETRY_FOR: Duration = Duration::from_secs(300);
/// Longest extracting a kit may take.
pub const EXTRACT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where a kit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KitSource {
    /// `fm:kits/NAME`: AgentService.FetchKit.
    Fm(String),
    /// `file:///PATH`: a local copy.
    File(PathBuf),
    /// `http(s)://...`.
    Http(String),
}

/// The source and file name of a kit URL.
pub fn parse_kit_url(url: &str) -> Result<(KitSource, String), String> {
    let (source, name) = if let Some(n) = url.strip_prefix("fm:kits/") {
        (KitSource::Fm(n.to_owned()), Some(n.to_owned()))
    } else if let Some(p) = url.strip_prefix("file://") {
        if !p.starts_with('/') {
            return Err(format!("kit_url {url} must be file:///ABSOLUTE/PATH"));
        }
        (KitSource::File(PathBuf::from(p)), super::url_file_name(url))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        (KitSource::Http(url.to_owned()), super::url_file_name(url))
    } else {
        return Err(format!(
            "unsupported kit_url {}: use fm:kits/NAME, file:///PATH or http(s)://",
            redact_url(url)
        ));
    };
    let name = name.unwrap_or_default();
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if !ok {
        return Err(format!(
            "kit_url {} does not end in a plain file name",
            redact_url(url)
        ));
    }
    Ok((source, name))
}

/// Compares dotted versions part by part, numerically where both parts
/// are numbers ("14.10.0" > "14.9.1"); missing parts count as 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split =
        |s: &str| -> Vec<String> { s.trim().split(['.', '-', '_']).map(str::to_owned).collect() };
    let (pa, pb) = (split(a), split(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map_or("0", String::as_str);
        let y = pb.get(i).map_or("0", String::as_str);
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The command.
pub async fn install(ctx: &Ctx, p: &mut Progress, req: &InstallNode) -> Outcome {
    let expected = req.kit_sha256.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "kit_sha256 {:?} is not a hex SHA-256",
            req.kit_sha256
        ));
    }
    if req.node_version.trim().is_empty() {
        return Err("node_version is empty".into());
    }
    let (source, name) = parse_kit_url(&req.kit_url)?;
    let data_dir = ctx.cfg.data_dir.clone();

    // Nothing to fetch when the node is already at this version.
    if let Some(cur) = crate::commands::node::installed_version(&data_dir)
        && !cur.is_empty()
        && compare_versions(&cur, &req.node_version) == Ordering::Equal
    {
        p.step(format!("node already at {cur}"), 100).await;
        return Ok(output(&data_dir, &cur));
    }

    let kits = ctx.cfg.state_dir.join("kits");
    fsutil::create_private_dir(&kits)
        .map_err(|e| format!("can't create {}: {e}", kits.display()))?;
    if nodeuser::node_ids(&ctx.cfg)?.is_some() {
        // The installer runs as the node's user: it must reach the kit
        // (the state dir only to pass through; its files stay 0600).
        for (d, mode) in [(&ctx.cfg.state_dir, 0o711), (&kits, 0o755)] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("can't open {} to the node's user: {e}", d.display()))?;
        }
    }
    remove_leftovers(&kits);
    let kit = kits.join(&name);
    let fetched = ensure_kit(ctx, p, &source, &name, &kit, &expected).await?;
    let dir = extract(p, &kit, &name, &kits, fetched).await?;
    let installer = find_installer(&dir)
        .ok_or_else(|| format!("kit {name} has no installer.sh in a single top directory"))?;

    let upgrade: Vec<String> = vec!["-d".into(), path_arg(&data_dir), "-u".into(), "-y".into()];
    let args = match crate::commands::node::installed_version(&data_dir) {
        Some(cur) if cur.is_empty() => {
            return Err(format!(
                "{} has no product_version; refusing to touch this data dir",
                data_dir.join("dss-version.json").display()
            ));
        }
        Some(cur) => match compare_versions(&cur, &req.node_version) {
            Ordering::Equal => {
                p.step(format!("node already at {cur}"), 100).await;
                return Ok(output(&data_dir, &cur));
            }
            Ordering::Less => {
                p.step(
                    format!("upgrading the node from {cur} to {}", req.node_version),
                    50,
                )
                .await;
                upgrade
            }
            Ordering::Greater if req.allow_downgrade => {
                p.step(
                    format!(
                        "downgrading the node from {cur} to {} (allowed)",
                        req.node_version
                    ),
                    50,
                )
                .await;
                upgrade
            }
            Ordering::Greater => {
                return Err(format!(
                    "refusing to downgrade the node from {cur} to {}",
                    req.node_version
                ));
            }
        },
        None => {
            if req.port == 0 || req.port > u32::from(u16::MAX) - 10 {
                return Err(format!("port {} is not a usable base port", req.port));
            }
            if req.node_type.trim().is_empty() {
                return Err("node_type is empty".into());
            }
            std::fs::create_dir_all(&data_dir)
                .map_err(|e| format!("can't create {}: {e}", data_dir.display()))?;
            nodeuser::give_to_node(&ctx.cfg, &data_dir)?;
            if std::fs::create_dir_all(&ctx.cfg.home_dir).is_ok() {
                nodeuser::give_to_node(&ctx.cfg, &ctx.cfg.home_dir)?;
            }
            p.step(
                format!(
                    "installing a new {} node {} on port {}",
                    req.node_type, req.node_version, req.port
                ),
                50,
            )
            .await;
            vec![
                "-d".into(),
                path_arg(&data_dir),
                "-p".into(),
                req.port.to_string(),
                "-t".into(),
                req.node_type.clone(),
            ]
        }
    };
    make_executable(&installer)?;
    let mut cmd = nodeuser::command(&ctx.cfg, &installer)?;
    cmd.args(&args);
    if let Some(top) = installer.parent() {
        cmd.current_dir(top);
    }
    let done = proc::run_streaming(cmd, INSTALLER_TIMEOUT, p).await?;
    if !done.success() {
        return Err(done.failure("installer.sh"));
    }
    let now = crate::commands::node::installed_version(&data_dir).unwrap_or_default();
    if compare_versions(&now, &req.node_version) != Ordering::Equal {
        return Err(format!(
            "installer.sh succeeded but the data dir reports version {now:?}, not {}",
            req.node_version
        ));
    }
    p.step(format!("node at {now}"), 100).await;
    Ok(output(&data_dir, &now))
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The command's output: version, and the initial credentials if the
/// installer left them.
fn output(data_dir: &Path, version: &str) -> Value {
    let mut out = json!({ "nodeVersion": version });
    for (key, file) in [
        ("initialPassword", "initial-admin-password"),
        ("adminApiKey", "admin-api-key"),
    ] {
        if let Ok(s) = std::fs::read_to_string(data_dir.join("config").join(file)) {
            out[key] = Value::String(s.trim().to_owned());
        }
    }
    out
}

/// Removes temporary files of an interrupted earlier install.
fn remove_leftovers(kits: &Path) {
    let Ok(rd) = std::fs::read_dir(kits) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("background task: {e}"))?
        .map_err(|e| e.to_string())
}

/// Makes `kit` a verified copy; true when it had to be fetched.
async fn ensure_kit(
    ctx: &Ctx,
    p: &mut Progress,
    source: &KitSource,
    name: &str,
    kit: &Path,
    expected: &str,
) -> Result<bool, String> {
    if kit.exists() {
        let k = kit.to_path_buf();
        let (got, _) = blocking(move || fsutil::sha256_file(&k)).await?;
        if got == expected {
            p.step(format!("kit {name} already here and verified"), 30)
                .await;
            return Ok(false);
        }
        p.line(format!(
            "kit {name} here has sha256 {got}, not {expected}; fetching it again"
        ))
        .await;
        std::fs::remove_file(kit).map_err(|e| format!("can't remove {}: {e}", kit.display()))?;
    }
    p.step(format!("fetching kit {name}"), 5).await;
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::default();
    let (tmp, got, size) = loop {
        let tmp = fsutil::temp_sibling(kit, "partial");
        match fetch(ctx, p, source, &tmp).await {
            Ok((got, size)) => break (tmp, got, size),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if !e.transient || started.elapsed() >= FETCH_RETRY_FOR {
                    return Err(format!("can't fetch kit {name}: {}", e.msg));
                }
                let delay = backoff.next_delay();
                p.line(format!(
                    "fetching kit {name} failed: {}; retrying in {:.1} s",
                    e.msg,
                    delay.as_secs_f64()
                ))
                .await;
                tokio::time::sleep(delay).await;
            }
        }
    };
    if got != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "kit {name} failed verification: expected sha256 {expected}, got {got}"
        ));
    }
    std::fs::rename(&tmp, kit).map_err(|e| format!("can't store kit {name}: {e}"))?;
    fsutil::sync_parent(kit);
    p.step(
        format!("kit {name} fetched and verified ({size} bytes)"),
        30,
    )
    .await;
    Ok(true)
}

/// A FetchKit failure; FM being away or restarting is worth a retry, a
/// refusal is not.
fn fetch_kit_error(s: &tonic::Status) -> FetchError {
    use tonic::Code;
    let msg = format!("FetchKit: {}", status_text(s));
    match s.code() {
        Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::Unimplemented => msg.into(),
        _ => FetchError::transient(msg),
    }
}

/// Writes the kit into `tmp`; (sha256, size).
async fn fetch(
    ctx: &Ctx,
    p: &mut Progress,
    source: &KitSource,
    tmp: &Path,
) -> Result<(String, u64), FetchError> {
    match source {
        KitSource::File(path) => {
            let (from, to) = (path.clone(), tmp.to_path_buf());
            Ok(blocking(move || fsutil::copy_hashing(&from, &to))
                .await
                .map_err(|e| format!("copy from {}: {e}", path.display()))?)
        }
        KitSource::Http(url) => {
            let mut out = HashingFile::create(tmp).await?;
            http_download(url, &HttpAuth::default(), &ctx.cfg.downloads, &mut out, p).await?;
            Ok(out.finish().await?)
        }
        KitSource::Fm(name) => {
            // The same bounds as an HTTP download.
            let limits = ctx.cfg.downloads;
            let idle = |what: &str| {
                FetchError::transient(format!(
                    "FetchKit: no {what} within {} s",
                    limits.idle_timeout.as_secs()
                ))
            };
            let started = tokio::time::Instant::now();
            let mut out = HashingFile::create(tmp).await?;
            let mut client =
                AgentServiceClient::new(ctx.channel.clone()).max_decoding_message_size(16 << 20);
            let mut stream = tokio::time::timeout(
                limits.idle_timeout,
                client.fetch_kit(FetchKitRequest { name: name.clone() }),
            )
            .await
            .map_err(|_| idle("answer"))?
            .map_err(|s| fetch_kit_error(&s))?
            .into_inner();
            let mut next_report = 64 << 20;
            loop {
                let wait = limits
                    .idle_timeout
                    .min(limits.timeout.saturating_sub(started.elapsed()));
                let next = tokio::time::timeout(wait, stream.message()).await;
                let Some(chunk) = next
                    .map_err(|_| {
                        if started.elapsed() >= limits.timeout {
                            FetchError::transient(format!(
                                "FetchKit: not done within {} s",
                                limits.timeout.as_secs()
                            ))
                        } else {
                            idle("data")
                        }
                    })?
                    .map_err(|s| fetch_kit_error(&s))?
                else {
                    break;
                };
                if out.size() + chunk.data.len() as u64 > limits.max_bytes {
                    return Err(format!(
                        "FetchKit: larger than the {} bytes a download may have",
                        limits.max_bytes
                    )
                    .into());
                }
                out.write(&chunk.data).await?;
                if out.size() >= next_report {
                    p.line(format!("fetched {} MiB", out.size() >> 20)).await;
                    next_report += 64 << 20;
                }
            }
            Ok(out.finish().await?)
        }
    }
}

/// `kits/<name without .tar.gz>/`, extracted afresh when the kit was just
/// fetched, else reused.
async fn extract(
    p: &mut Progress,
    kit: &Path,
    name: &str,
    kits: &Path,
    fetched: bool,
) -> Result<PathBuf, String> {
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .map_or_else(|| format!("{name}.d"), str::to_owned);
    let dir = kits.join(stem);
    if dir.exists() {
        if !fetched && find_installer(&dir).is_some() {
            p.step(format!("kit {name} already extracted"), 40).await;
            return Ok(dir);
        }
        let d = dir.clone();
        blocking(move || std::fs::remove_dir_all(&d)).await?;
    }
    let tmp = fsutil::temp_sibling(&dir, "extract");
    std::fs::create_dir(&tmp).map_err(|e| format!("can't create {}: {e}", tmp.display()))?;
    let mut cmd = Command::new("tar");
    cmd.arg("--no-same-owner")
        .arg("-xzf")
        .arg(kit)
        .arg("-C")
        .arg(&tmp);
    match proc::run_streaming(cmd, EXTRACT_TIMEOUT, p).await {
        Ok(d) if d.success() => {}
        Ok(d) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(d.failure(&format!("tar -xzf {name}")));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    }
    std::fs::rename(&tmp, &dir).map_err(|e| format!("can't move the extracted kit: {e}"))?;
    p.step(format!("kit {name} extracted"), 40).await;
    Ok(dir)
}

/// `dir/TOP/installer.sh` for the single top directory (or
/// `dir/installer.sh` for a kit without one).
pub fn find_installer(dir: &Path) -> Option<PathBuf> {
    let direct = dir.join("installer.sh");
    if direct.is_file() {
        return Some(direct);
    }
    let tops: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match tops.as_slice() {
        [top] => Some(top.join("installer.sh")).filter(|i| i.is_file()),
        _ => None,
    }
}

fn make_executable(path: &Path) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = m.permissions().mode();
    if mode & 0o100 == 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))
            .map_err(|e| format!("can't make {} executable: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("14.2.0", "14.2.0"), Ordering::Equal);
        assert_eq!(compare_versions("14.2", "14.2.0"), Ordering::Equal);
        assert_eq!(compare_versions("14.9.1", "14.10.0"), Ordering::Less);
        assert_eq!(compare_versions("15.0.0", "14.10.0"), Ordering::Greater);
    }

    #[test]
    fn kit_urls_give_source_and_name() {
        assert_eq!(
            parse_kit_url("fm:kits/standin-kit-14.2.0.tar.gz").unwrap(),
            (
                KitSource::Fm("standin-kit-14.2.0.tar.gz".into()),
                "standin-kit-14.2.0.tar.gz".into()
            )
        );
        assert_eq!(
            parse_kit_url("file:///srv/kits/k.tar.gz").unwrap(),
            (
                KitSource::File("/srv/kits/k.tar.gz".into()),
                "k.tar.gz".into()
            )
        );
        assert_eq!(parse_kit_url("https://h/x/k.tgz?sig=1").unwrap().1, "k.tgz");
        assert!(parse_kit_url("fm:kits/../../etc/passwd").is_err());
        assert!(parse_kit_url("ftp://h/k.tar.gz").is_err());
        assert!(parse_kit_url("file://relative/k.tar.gz").is_err());
    }

    #[tokio::test]
    async fn a_kit_with_the_wrong_sha256_is_deleted_and_fails_with_both_sums() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("k.tar.gz");
        std::fs::write(&src, b"not the kit you expected").unwrap();
        let kits = d.path().join("kits");
        std::fs::create_dir(&kits).unwrap();
        let ctx = crate::commands::tests_support::ctx(d.path());
        let mut p = Progress::new("c", crate::session::Link::default());
        let expected = "0".repeat(64);
        let err = ensure_kit(
            &ctx,
            &mut p,
            &KitSource::File(src.clone()),
            "k.tar.gz",
            &kits.join("k.tar.gz"),
            &expected,
        )
        .await
        .unwrap_err();
        let (actual, _) = fsutil::sha256_file(&src).unwrap();
        assert_eq!(
            err,
            format!("kit k.tar.gz failed verification: expected sha256 {expected}, got {actual}")
        );
        assert_eq!(
            std::fs::read_dir(&kits).unwrap().count(),
            0,
            "no kit file left"
        );
    }

    #[test]
    fn the_installer_is_found_under_the_single_top_dir() {
        let d = tempfile::tempdir().unwrap();
        assert!(find_installer(d.path()).is_none());
        std::fs::create_dir(d.path().join("kit-1")).unwrap();
        std::fs::write(d.path().join("kit-1/installer.sh"), "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_installer(d.path()).unwrap(),
            d.path().join("kit-1/installer.sh")
        );
        std::fs::create_dir(d.path().join("other")).unwrap();
        assert!(find_installer(d.path()).is_none());
    }
}
