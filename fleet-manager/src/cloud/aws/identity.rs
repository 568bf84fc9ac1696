//! EC2 instance identity documents: what an agent presents at enrollment
//! to prove the VM it runs on. The document (JSON from IMDS) comes with a
//! base64-encoded RSA signature over its SHA-256; FM checks it against the
//! certificates it trusts (AWS publishes one per region group; the test rig
//! signs with its own), then reads the instance id, region and account.

use crate::error::{Error, Result};
use serde::Deserialize;

/// The RSA public keys of the certificates FM trusts for identity
/// documents.
#[derive(Debug, Clone, Default)]
pub struct IdentityCerts {
    keys: Vec<Vec<u8>>,
}

/// What FM reads of a verified document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDocument {
    pub instance_id: String,
    pub region: String,
    #[serde(default)]
    pub account_id: String,
}

impl IdentityCerts {
    /// Every `CERTIFICATE` block of `pem`; each must hold an RSA key.
    pub fn from_pem(pem: &str) -> Result<IdentityCerts> {
        let mut keys = Vec::new();
        for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
            let block = block.map_err(|e| {
                Error::invalid(format!("identity certificates: block {}: {e}", i + 1))
            })?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            let cert = block.parse_x509().map_err(|e| {
                Error::invalid(format!("identity certificates: certificate {}: {e}", i + 1))
            })?;
            match cert.public_key().parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(_)) => {
                    keys.push(cert.public_key().subject_public_key.data.to_vec());
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "identity certificates: certificate {} holds no RSA key (use the RSA certificates AWS publishes for the base64-encoded signature)",
                        i + 1
                    )));
                }
            }
        }
        if keys.is_empty() {
            return Err(Error::invalid(
                "identity certificates: no PEM certificate found",
            ));
        }
        Ok(IdentityCerts { keys })
    }

    /// Whether any certificate is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signature` (base64, line breaks allowed) over `document`
    /// with any trusted key, then parses the document.
    pub fn verify(&self, document: &str, signature: &str) -> Result<IdentityDocument> {
        use base64::Engine;
        if document.is_empty() || signature.is_empty() {
            return Err(Error::invalid(
                "no instance identity document: the agent must present the VM's signed identity document (IMDSv2)",
            ));
        }
        let compact: String = signature.split_whitespace().collect();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| Error::invalid("the identity signature is not base64"))?;
        let ok = self.keys.iter().any(|k| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                k,
            )
            .verify(document.as_bytes(), &sig)
            .is_ok()
        });
        if !ok {
            return Err(Error::invalid(
                "the identity document's signature does not verify with any trusted certificate",
            ));
        }
        serde_json::from_str(document)
            .map_err(|e| Error::invalid(format!("the identity document is not one: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_without_an_rsa_key_or_none_at_all_are_refused() {
        assert!(IdentityCerts::from_pem("nothing here").is_err());
        // rcgen's default key is ECDSA.
        let k = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let e = IdentityCerts::from_pem(&cert.pem()).unwrap_err();
        assert!(e.to_string().contains("no RSA key"), "{e}");
    }

    #[test]
    fn a_missing_document_or_a_bad_signature_is_refused() {
        let c = IdentityCerts {
            keys: vec![vec![0u8; 10]],
        };
        let e = c.verify("", "").unwrap_err();
        assert!(
            e.to_string().contains("no instance identity document"),
            "{e}"
        );
        let e = c.verify("{}", "!!").unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let e = c.verify("{}", "AAAA").unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }
}
