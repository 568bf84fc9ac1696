//! Instance templates ("instance settings templates"): how nodes are set up.

use super::setup_action::SetupAction;
use super::tenant::check_license_json;
use super::{check_iam_arn, check_label, check_len, check_region, nullable};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AwsApiAccessMode {
    #[default]
    None,
    Keypair,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeypairStorageMode {
    #[default]
    None,
    InlineEncrypted,
    AwsSecretsManager,
}

fn yes() -> bool {
    true
}

/// An instance template as the public API reads and writes it.
/// `dataikuAwsSecretAccessKey` is write-only (stored encrypted).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTemplate {
    /// Read-only; set by FM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub label: String,
    #[serde(default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub setup_actions: Vec<SetupAction>,
    /// A license (JSON document as a string) overriding the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default)]
    pub aws_key_pair_name: Option<String>,
    #[serde(default)]
    pub startup_instance_profile_arn: Option<String>,
    #[serde(default)]
    pub runtime_instance_profile_arn: Option<String>,
    #[serde(default = "yes")]
    pub restrict_aws_metadata_server_access: bool,
    #[serde(
        rename = "dataikuAwsAPIAccessMode",
        default,
        deserialize_with = "nullable"
    )]
    pub dataiku_aws_api_access_mode: AwsApiAccessMode,
    #[serde(default, deserialize_with = "nullable")]
    pub dataiku_aws_keypair_storage_mode: KeypairStorageMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataiku_aws_access_key_id: Option<String>,
    /// Write-only.
    #[serde(default, skip_serializing)]
    pub dataiku_aws_secret_access_key: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub has_dataiku_aws_secret_access_key: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataiku_aws_secret_access_key_aws_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secrets_manager_region: Option<String>,
    /// Read-only: how many instances use this template.
    #[serde(default, deserialize_with = "nullable")]
    pub nb_instances: u64,
}

impl InstanceTemplate {
    pub fn validate(&mut self) -> Result<()> {
        check_label("label", &self.label)?;
        check_len("description", &self.description, 4096)?;
        if self.setup_actions.len() > 200 {
            return Err(Error::invalid("setupActions: at most 200 actions"));
        }
        for (i, a) in self.setup_actions.iter().enumerate() {
            a.validate(i)?;
        }
        if let Some(l) = &self.license {
            check_license_json("license", l)?;
        }
        if let Some(k) = &self.aws_key_pair_name
            && (k.is_empty() || k.len() > 255)
        {
            return Err(Error::invalid("awsKeyPairName must be 1 to 255 characters"));
        }
        for (field, arn) in [
            (
                "startupInstanceProfileArn",
                &self.startup_instance_profile_arn,
            ),
            (
                "runtimeInstanceProfileArn",
                &self.runtime_instance_profile_arn,
            ),
        ] {
            if let Some(arn) = arn {
                check_iam_arn(field, arn, "instance-profile")?;
            }
        }
        match self.dataiku_aws_api_access_mode {
            AwsApiAccessMode::None => {
                self.dataiku_aws_keypair_storage_mode = KeypairStorageMode::None;
                self.dataiku_aws_access_key_id = None;
                self.dataiku_aws_secret_access_key = None;
                self.dataiku_aws_secret_access_key_aws_secret_name = None;
                self.aws_secrets_manager_region = None;
            }
            AwsApiAccessMode::Keypair => match self.dataiku_aws_keypair_storage_mode {
                KeypairStorageMode::None => {
                    self.dataiku_aws_access_key_id = None;
                    self.dataiku_aws_secret_access_key = None;
                }
                KeypairStorageMode::InlineEncrypted => {
                    let key = self.dataiku_aws_access_key_id.as_deref().ok_or_else(|| {
                        Error::invalid(
                            "dataikuAwsAccessKeyId is required with INLINE_ENCRYPTED storage",
                        )
                    })?;
                    super::account::check_access_key_id("dataikuAwsAccessKeyId", key)?;
                    if let Some(s) = &self.dataiku_aws_secret_access_key {
                        super::account::check_secret_access_key("dataikuAwsSecretAccessKey", s)?;
                    }
                }
                KeypairStorageMode::AwsSecretsManager => {
                    if self
                        .dataiku_aws_secret_access_key_aws_secret_name
                        .as_deref()
                        .is_none_or(str::is_empty)
                    {
                        return Err(Error::invalid(
                            "dataikuAwsSecretAccessKeyAwsSecretName is required with AWS_SECRETS_MANAGER storage",
                        ));
                    }
                    if let Some(r) = &self.aws_secrets_manager_region {
                        check_region("awsSecretsManagerRegion", r)?;
                    }
                    self.dataiku_aws_secret_access_key = None;
                }
            },
        }
        Ok(())
    }

    /// Whether the stored template must keep a secret for its settings.
    pub fn needs_inline_secret(&self) -> bool {
        self.dataiku_aws_api_access_mode == AwsApiAccessMode::Keypair
            && self.dataiku_aws_keypair_storage_mode == KeypairStorageMode::InlineEncrypted
    }
}
