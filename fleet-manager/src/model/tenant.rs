//! Tenant-wide settings: cloud credentials and cloud tags.

use super::account::{check_access_key_id, check_secret_access_key};
use super::{check_iam_arn, check_len, nullable};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The id of the tenant that exists after the first start.
pub const DEFAULT_TENANT: &str = "main";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantAuthMode {
    /// FM's own instance profile.
    #[default]
    SameAsFm,
    IamRole,
    Keypair,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LicenseMode {
    #[default]
    None,
    Static,
    AutoUpdate,
}

/// `GET/PUT /cloud-credentials`. `awsSecretAccessKey` and `licenseToken` are
/// write-only (stored encrypted; a PUT without them keeps the stored ones).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudCredentials {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub aws_authentication_mode: TenantAuthMode,
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
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub has_aws_secret_access_key: bool,
    #[serde(rename = "awsCMKId", default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_text_2048)]
    pub aws_cmk_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub license_mode: LicenseMode,
    /// A license as a JSON document in a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_license)]
    pub license: Option<String>,
    /// Write-only.
    #[serde(default, skip_serializing_if = "super::write_only")]
    #[schema(write_only, min_length = 1, pattern = r"\S")]
    pub license_token: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub has_license_token: bool,
}

/// The secrets of a tenant's credentials, kept apart from the document and
/// stored encrypted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CredentialSecrets {
    pub aws_secret_access_key: Option<String>,
    pub license_token: Option<String>,
}

impl CloudCredentials {
    pub fn validate(&mut self) -> Result<()> {
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
        if let Some(license) = &self.license {
            check_license_json("license", license)?;
        }
        if let Some(t) = &self.license_token
            && t.trim().is_empty()
        {
            return Err(Error::invalid("licenseToken must not be empty"));
        }
        match self.aws_authentication_mode {
            TenantAuthMode::SameAsFm => {
                self.aws_iam_role_arn = None;
                self.aws_access_key_id = None;
                self.aws_secret_access_key = None;
            }
            TenantAuthMode::IamRole => {
                let arn = self.aws_iam_role_arn.as_deref().ok_or_else(|| {
                    Error::invalid(
                        "awsIAMRoleARN is required when awsAuthenticationMode is IAM_ROLE",
                    )
                })?;
                check_iam_arn("awsIAMRoleARN", arn, "role")?;
                self.aws_access_key_id = None;
                self.aws_secret_access_key = None;
            }
            TenantAuthMode::Keypair => {
                let key = self.aws_access_key_id.as_deref().ok_or_else(|| {
                    Error::invalid(
                        "awsAccessKeyId is required when awsAuthenticationMode is KEYPAIR",
                    )
                })?;
                check_access_key_id("awsAccessKeyId", key)?;
                if let Some(s) = &self.aws_secret_access_key {
                    check_secret_access_key("awsSecretAccessKey", s)?;
                }
                self.aws_iam_role_arn = None;
            }
        }
        if let Some(cmk) = &self.aws_cmk_id {
            check_len("awsCMKId", cmk, 2048)?;
        }
        match self.license_mode {
            LicenseMode::None => {}
            LicenseMode::Static => {
                let license = self.license.as_deref().ok_or_else(|| {
                    Error::invalid("license is required when licenseMode is STATIC")
                })?;
                check_license_json("license", license)?;
            }
            LicenseMode::AutoUpdate => {
                if let Some(t) = &self.license_token
                    && t.trim().is_empty()
                {
                    return Err(Error::invalid("licenseToken must not be empty"));
                }
            }
        }
        Ok(())
    }
}

/// A license must be a JSON object given as a string.
pub fn check_license_json(field: &str, license: &str) -> Result<()> {
    check_len(field, license, 1 << 16)?;
    match serde_json::from_str::<serde_json::Value>(license) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(Error::invalid(format!(
            "{field} must be a JSON object given as a string"
        ))),
    }
}

/// The body of `PUT /cloud-tags` and its answer: tag names to values.
pub struct CloudTags;

impl utoipa::PartialSchema for CloudTags {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::tags().into()
    }
}

impl ToSchema for CloudTags {}

/// `GET /cloud-tags` answers `{"msg": "<the tags as a JSON string>"}`, the
/// shape the public client parses.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CloudTagsEnvelope {
    pub msg: String,
}
