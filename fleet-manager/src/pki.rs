//! FM's own certificate authority: it signs FM's agent-endpoint server
//! certificate and the client certificates agents receive at enrollment.
//!
//! The CA is made on first start and kept in the `settings` table, its key
//! sealed with the secrets key, so every replica sharing the database
//! shares the CA.

use crate::crypto::{Place, SecretBox};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::store::Store;
use crate::store::entities::setting;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

const CA_SETTING: &str = "agent-ca";

/// How long an agent certificate lasts.
pub const AGENT_CERT_DAYS: u64 = 365;

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_sealed: String,
}

/// The CA, loaded.
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

fn rc(e: rcgen::Error) -> Error {
    Error::internal(format!("certificate error: {e}"))
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(days * 86_400)).into();
}

impl Ca {
    /// Loads the CA from the store, creating it on first use. Replicas that
    /// race on creation converge on the first one written.
    pub async fn load_or_create(store: &Store, secrets: &SecretBox) -> Result<Ca> {
        if let Some(ca) = Self::load(store, secrets).await? {
            return Ok(ca);
        }
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Fleet Manager agent CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let cert = params.self_signed(&key).map_err(rc)?;
        let stored = StoredCa {
            cert_pem: cert.pem(),
            key_sealed: secrets.seal(&Place::ca_key(), &key.serialize_pem())?,
        };
        setting::Entity::insert(setting::ActiveModel {
            key: Set(CA_SETTING.into()),
            value: Set(serde_json::to_string(&stored).map_err(Error::internal)?),
            updated_at: Set(now_ms()),
        })
        .on_conflict(
            OnConflict::column(setting::Column::Key)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(store.conn())
        .await?;
        Self::load(store, secrets)
            .await?
            .ok_or_else(|| Error::internal("the CA vanished after creation"))
    }

    async fn load(store: &Store, secrets: &SecretBox) -> Result<Option<Ca>> {
        let Some(row) = setting::Entity::find_by_id(CA_SETTING.to_string())
            .one(store.conn())
            .await?
        else {
            return Ok(None);
        };
        let stored: StoredCa = serde_json::from_str(&row.value).map_err(Error::internal)?;
        Ok(Some(Ca {
            cert_pem: stored.cert_pem,
            key_pem: secrets.open(&Place::ca_key(), &stored.key_sealed)?,
        }))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(rc)?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(rc)
    }

    /// A server certificate for FM's agent endpoint, valid for `names`
    /// (host names or IP addresses).
    pub fn server_cert(&self, names: &[String]) -> Result<CertKey> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Fleet Manager agent endpoint");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &self.issuer()?).map_err(rc)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks that a CSR can be read and its signature holds; returns the
    /// SHA-256 (hex) of its public key.
    pub fn check_csr(csr_pem: &str) -> Result<String> {
        use rcgen::PublicKeyData;
        use sha2::{Digest, Sha256};
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            Error::invalid(format!(
                "the certificate signing request can't be read: {e}"
            ))
        })?;
        Ok(hex::encode(Sha256::digest(
            csr.public_key.subject_public_key_info(),
        )))
    }

    /// Signs an agent's CSR. The certificate names the instance (common
    /// name) and the VM (organizational unit), whatever the CSR asked for;
    /// it can only authenticate a client.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        instance_id: &str,
        vm_id: &str,
    ) -> Result<(String, i64)> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            Error::invalid(format!(
                "the certificate signing request can't be read: {e}"
            ))
        })?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, instance_id);
        dn.push(DnType::OrganizationalUnitName, vm_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Agents renew a month before expiry (`AgentService.Renew`).
        validity(&mut params, AGENT_CERT_DAYS);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(rc)?;
        let not_after_ms = now_ms() + AGENT_CERT_DAYS as i64 * 86_400_000;
        Ok((cert.pem(), not_after_ms))
    }
}

/// The instance (common name) and VM (organizational unit) an agent
/// certificate names.
pub fn agent_identity(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let ou = cert
        .subject()
        .iter_organizational_unit()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some((cn, ou))
}
