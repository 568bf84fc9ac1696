//! Enrollment: a one-time exchange of the enrollment token and a CSR for a
//! client certificate signed by FM's CA (subject CN = the instance id).
//! Skipped when `state_dir/agent.crt` and `agent.key` exist; retried with
//! backoff until it works (a refused token may be fixed by re-provisioning).

use crate::config::{Config, Secret};
use crate::fsutil;
use crate::session::{Backoff, status_text};
use fm_proto::agent::EnrollRequest;
use fm_proto::agent::enrollment_client::EnrollmentClient;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::io;
use std::path::Path;
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// File name of the agent's certificate in the state dir.
pub const CERT_FILE: &str = "agent.crt";
/// File name of the agent's private key in the state dir.
pub const KEY_FILE: &str = "agent.key";
/// File name of the certificate's expiry (ms since the epoch) in the state dir.
pub const EXPIRY_FILE: &str = "agent.expiry";
/// Renew this long before the certificate expires.
pub const RENEW_BEFORE_MS: i64 = 30 * 86_400_000;

/// The agent's client certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// The certificate FM signed.
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: Secret,
    /// When the certificate expires (ms since the epoch), if FM said.
    pub not_after_ms: Option<i64>,
}

impl AgentIdentity {
    /// Whether the certificate should be renewed at `now_ms`.
    pub fn renewal_due(&self, now_ms: i64) -> bool {
        self.not_after_ms
            .is_some_and(|t| t - now_ms <= RENEW_BEFORE_MS)
    }
}

/// Why an enrollment attempt failed.
#[derive(Debug)]
pub enum EnrollError {
    /// FM refused the request (bad, used or expired token; bad CSR).
    Refused(String),
    /// Anything else: FM unreachable, TLS failure, local error.
    Failed(String),
}

/// The stored identity, if both files exist.
pub fn load_identity(state_dir: &Path) -> io::Result<Option<AgentIdentity>> {
    let (cert, key) = (state_dir.join(CERT_FILE), state_dir.join(KEY_FILE));
    if !cert.exists() || !key.exists() {
        return Ok(None);
    }
    let not_after_ms = std::fs::read_to_string(state_dir.join(EXPIRY_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(Some(AgentIdentity {
        cert_pem: std::fs::read_to_string(cert)?,
        key_pem: Secret::new(std::fs::read_to_string(key)?),
        not_after_ms,
    }))
}

/// The agent's identity: the stored one, or a new one from FM (retrying
/// with backoff for as long as it takes).
pub async fn ensure_enrolled(cfg: &Config) -> AgentIdentity {
    match load_identity(&cfg.state_dir) {
        Ok(Some(id)) => return id,
        Ok(None) => {}
        Err(e) => tracing::warn!("can't read the stored certificate, enrolling again: {e}"),
    }
    // One key for every attempt, kept on disk: if an answer is lost (or the
    // agent restarts), FM accepts the same token again with the same key.
    let pending = pending_key(&cfg.state_dir);
    let mut backoff = Backoff::default();
    loop {
        match enroll_once(cfg, pending.as_ref()).await {
            Ok(id) => {
                tracing::info!(instance_id = %cfg.instance_id, "enrolled with FM");
                store_identity(&cfg.state_dir, &id);
                let _ = std::fs::remove_file(cfg.state_dir.join(PENDING_KEY_FILE));
                return id;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                match e {
                    EnrollError::Refused(m) => tracing::error!(
                        "enrollment refused: {m}; retrying in {:.1} s (re-provision the instance if the token is spent)",
                        delay.as_secs_f64()
                    ),
                    EnrollError::Failed(m) => tracing::warn!(
                        "enrollment failed: {m}; retrying in {:.1} s",
                        delay.as_secs_f64()
                    ),
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

pub(crate) fn store_identity(state_dir: &Path, id: &AgentIdentity) {
    // Key first: a certificate without its key would skip enrollment.
    let write = || {
        fsutil::write_atomic(
            &state_dir.join(KEY_FILE),
            id.key_pem.expose().as_bytes(),
            0o600,
        )?;
        fsutil::write_atomic(&state_dir.join(CERT_FILE), id.cert_pem.as_bytes(), 0o600)?;
        match id.not_after_ms {
            Some(t) => fsutil::write_atomic(
                &state_dir.join(EXPIRY_FILE),
                t.to_string().as_bytes(),
                0o600,
            ),
            None => Ok(()),
        }
    };
    if let Err(e) = write() {
        tracing::error!(
            "can't store the agent certificate in {}: {e}; it is kept in memory only",
            state_dir.display()
        );
    }
}

/// The key being enrolled, before FM has signed it.
const PENDING_KEY_FILE: &str = "enroll.key";

/// The key of the enrollment in progress: read from the state dir, or made
/// and stored there (mode 0600). None if it can't be stored (each attempt
/// then makes its own).
fn pending_key(state_dir: &Path) -> Option<Secret> {
    let path = state_dir.join(PENDING_KEY_FILE);
    if let Ok(pem) = std::fs::read_to_string(&path)
        && KeyPair::from_pem(&pem).is_ok()
    {
        return Some(Secret::new(pem));
    }
    let pem = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .ok()?
        .serialize_pem();
    fsutil::write_atomic(&path, pem.as_bytes(), 0o600).ok()?;
    Some(Secret::new(pem))
}

/// A CSR (subject CN = `instance_id`) for `key`, or for a new key:
/// (key PEM, CSR PEM).
pub fn csr_for(instance_id: &str, key: Option<&Secret>) -> Result<(Secret, String), rcgen::Error> {
    let key = match key {
        Some(pem) => KeyPair::from_pem(pem.expose())?,
        None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
    };
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, instance_id);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((Secret::new(key.serialize_pem()), csr))
}

/// One enrollment attempt, with `key` if given (else a new one).
pub async fn enroll_once(cfg: &Config, key: Option<&Secret>) -> Result<AgentIdentity, EnrollError> {
    let (key_pem, csr_pem) = csr_for(&cfg.instance_id, key)
        .map_err(|e| EnrollError::Failed(format!("can't make a key and CSR: {e}")))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cfg.ca_pem))
        .domain_name(cfg.fm_host.clone());
    let channel = Endpoint::from_shared(cfg.fm_url.clone())
        .map_err(|e| EnrollError::Failed(format!("bad fm_url: {e}")))?
        .tls_config(tls)
        .map_err(|e| EnrollError::Failed(format!("TLS setup: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| {
            EnrollError::Failed(format!("can't reach FM at {}: {}", cfg.fm_url, chain(&e)))
        })?;
    let (identity_document, identity_signature) = match &cfg.imds_url {
        Some(url) => identity(url)
            .await
            .map_err(|e| EnrollError::Failed(format!("instance identity from {url}: {e}")))?,
        None => (String::new(), String::new()),
    };
    let resp = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            instance_id: cfg.instance_id.clone(),
            token: cfg.enrollment_token.expose().to_owned(),
            csr_pem,
            identity_document,
            identity_signature,
        })
        .await
        .map_err(|s| match s.code() {
            Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument => {
                EnrollError::Refused(status_text(&s))
            }
            _ => EnrollError::Failed(status_text(&s)),
        })?
        .into_inner();
    if !resp.certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(EnrollError::Failed(
            "FM answered without a PEM certificate".into(),
        ));
    }
    Ok(AgentIdentity {
        cert_pem: resp.certificate_pem,
        key_pem,
        not_after_ms: (resp.not_after_ms > 0).then_some(resp.not_after_ms),
    })
}

/// The VM's instance identity document and its signature, through IMDSv2
/// (a session token first, then both with it).
pub async fn identity(imds_url: &str) -> Result<(String, String), String> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let token = http
        .put(format!("{imds_url}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("session token: {e}"))?
        .text()
        .await
        .map_err(|e| format!("session token: {e}"))?;
    let get = |what: &'static str| {
        let req = http
            .get(format!(
                "{imds_url}/latest/dynamic/instance-identity/{what}"
            ))
            .header("X-aws-ec2-metadata-token", token.trim());
        async move {
            let text = req
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("{what}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if text.len() > 16 * 1024 {
                return Err(format!("{what}: over 16 KiB"));
            }
            Ok(text)
        }
    };
    Ok((get("document").await?, get("signature").await?))
}

/// Renews the certificate over the mutual-TLS channel of the current one:
/// a new key, the same instance and VM.
pub async fn renew(
    cfg: &Config,
    channel: tonic::transport::Channel,
) -> Result<AgentIdentity, EnrollError> {
    let (key_pem, csr_pem) = csr_for(&cfg.instance_id, None)
        .map_err(|e| EnrollError::Failed(format!("can't make a key and CSR: {e}")))?;
    let resp = fm_proto::agent::agent_service_client::AgentServiceClient::new(channel)
        .renew(fm_proto::agent::RenewRequest { csr_pem })
        .await
        .map_err(|s| EnrollError::Failed(status_text(&s)))?
        .into_inner();
    if !resp.certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(EnrollError::Failed(
            "FM answered without a PEM certificate".into(),
        ));
    }
    Ok(AgentIdentity {
        cert_pem: resp.certificate_pem,
        key_pem,
        not_after_ms: (resp.not_after_ms > 0).then_some(resp.not_after_ms),
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(&format!(": {s}"));
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csr_names_the_instance_and_verifies() {
        let (key, csr) = csr_for("inst-abc123", None).unwrap();
        assert!(key.expose().contains("PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let cn = parsed
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .unwrap();
        assert!(format!("{cn:?}").contains("inst-abc123"));
    }

    #[test]
    fn every_enrollment_attempt_uses_the_same_stored_key() {
        let d = tempfile::tempdir().unwrap();
        let first = pending_key(d.path()).unwrap();
        let again = pending_key(d.path()).unwrap();
        assert_eq!(first.expose(), again.expose());
        let (key, _) = csr_for("inst-abc123", Some(&first)).unwrap();
        assert_eq!(key.expose(), first.expose());
    }

    #[test]
    fn renewal_is_due_a_month_before_expiry_and_never_without_one() {
        let day = 86_400_000;
        let id = |t: Option<i64>| AgentIdentity {
            cert_pem: String::new(),
            key_pem: Secret::new(String::new()),
            not_after_ms: t,
        };
        assert!(!id(Some(100 * day)).renewal_due(0));
        assert!(id(Some(29 * day)).renewal_due(0));
        assert!(id(Some(-1)).renewal_due(0));
        assert!(!id(None).renewal_due(0));
    }

    #[test]
    fn a_stored_identity_needs_both_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(load_identity(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(CERT_FILE), "c").unwrap();
        assert!(load_identity(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(KEY_FILE), "k").unwrap();
        assert_eq!(load_identity(d.path()).unwrap().unwrap().cert_pem, "c");
    }
}
