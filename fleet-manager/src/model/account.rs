//! Cloud accounts: the AWS identity FM uses for the networks that name it.

use super::{check_iam_arn, check_label, check_len, nullable};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How FM authenticates to AWS for this account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AwsAccountAuthMode {
    /// The SDK's default chain (FM's instance profile on EC2).
    #[default]
    DefaultInstanceCredentials,
    /// Assume the role `awsIAMRoleARN` through STS.
    IamRole,
    /// A static access key; the secret is stored encrypted.
    Keypair,
}

/// A cloud account, as the public API reads and writes it.
///
/// `awsSecretAccessKey` is write-only: it is stored encrypted and never
/// returned; `hasAwsSecretAccessKey` tells whether one is set. A PUT that
/// leaves it out keeps the stored one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudAccount {
    /// Read-only; set by FM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub id: Option<String>,
    #[schema(schema_with = super::schema::label)]
    pub label: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_description)]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub aws_authentication_mode: AwsAccountAuthMode,
    #[serde(
        rename = "awsIAMRoleARN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = super::schema::nullable_role_arn)]
    pub aws_iam_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_access_key_id)]
    pub aws_access_key_id: Option<String>,
    /// Write-only.
    #[serde(default, skip_serializing_if = "super::write_only")]
    #[schema(schema_with = super::schema::nullable_secret_access_key)]
    pub aws_secret_access_key: Option<String>,
    /// Read-only: whether a secret access key is stored.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub has_aws_secret_access_key: bool,
    /// Read-only: how many virtual networks use this account.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub nb_networks: u64,
}

impl CloudAccount {
    /// Checks the settings and drops fields the chosen mode does not use.
    pub fn validate(&mut self) -> Result<()> {
        check_label("label", &self.label)?;
        check_len("description", &self.description, 4096)?;
        // A field's shape is checked whenever it is given, whatever the mode.
        if let Some(arn) = &self.aws_iam_role_arn {
            check_iam_arn("awsIAMRoleARN", arn, "role")?;
        }
        if let Some(key) = &self.aws_access_key_id {
            check_access_key_id("awsAccessKeyId", key)?;
        }
        if let Some(secret) = &self.aws_secret_access_key {
            check_secret_access_key("awsSecretAccessKey", secret)?;
        }
        match self.aws_authentication_mode {
            AwsAccountAuthMode::DefaultInstanceCredentials => {
                self.aws_iam_role_arn = None;
                self.aws_access_key_id = None;
                self.aws_secret_access_key = None;
            }
            AwsAccountAuthMode::IamRole => {
                let arn = self.aws_iam_role_arn.as_deref().ok_or_else(|| {
                    Error::invalid(
                        "awsIAMRoleARN is required when awsAuthenticationMode is IAM_ROLE",
                    )
                })?;
                check_iam_arn("awsIAMRoleARN", arn, "role")?;
                self.aws_access_key_id = None;
                self.aws_secret_access_key = None;
            }
            AwsAccountAuthMode::Keypair => {
                let key = self.aws_access_key_id.as_deref().ok_or_else(|| {
                    Error::invalid(
                        "awsAccessKeyId is required when awsAuthenticationMode is KEYPAIR",
                    )
                })?;
                check_access_key_id("awsAccessKeyId", key)?;
                if let Some(secret) = &self.aws_secret_access_key {
                    check_secret_access_key("awsSecretAccessKey", secret)?;
                }
                self.aws_iam_role_arn = None;
            }
        }
        Ok(())
    }
}

/// An AWS access key id: `AKIA` or `ASIA` and 16 upper-case letters or digits.
pub fn check_access_key_id(field: &str, key: &str) -> Result<()> {
    let ok = key.len() == 20
        && (key.starts_with("AKIA") || key.starts_with("ASIA"))
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} is not an AWS access key id (20 characters starting with AKIA or ASIA)"
        )))
    }
}

/// An AWS secret access key: 40 printable characters, never echoed back.
pub fn check_secret_access_key(field: &str, secret: &str) -> Result<()> {
    if secret.len() == 40 && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} is not an AWS secret access key (40 characters)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(mode: AwsAccountAuthMode) -> CloudAccount {
        CloudAccount {
            label: "prod".into(),
            aws_authentication_mode: mode,
            ..Default::default()
        }
    }

    #[test]
    fn iam_role_mode_requires_a_role_arn() {
        let mut a = account(AwsAccountAuthMode::IamRole);
        assert!(
            a.validate()
                .unwrap_err()
                .message()
                .contains("awsIAMRoleARN")
        );
        a.aws_iam_role_arn = Some("arn:aws:iam::123456789012:role/fm".into());
        a.validate().unwrap();
    }

    #[test]
    fn keypair_mode_checks_the_access_key_shape() {
        let mut a = account(AwsAccountAuthMode::Keypair);
        a.aws_access_key_id = Some("not-a-key".into());
        assert!(a.validate().is_err());
        a.aws_access_key_id = Some("AKIAIOSFODNN7EXAMPLE".into());
        a.aws_secret_access_key = Some("short".into());
        assert!(a.validate().is_err());
        a.aws_secret_access_key = Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into());
        a.validate().unwrap();
    }

    #[test]
    fn secret_is_never_serialized() {
        let mut a = account(AwsAccountAuthMode::Keypair);
        a.aws_access_key_id = Some("AKIAIOSFODNN7EXAMPLE".into());
        a.aws_secret_access_key = Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into());
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("wJalr"), "{json}");
    }
}
