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
    #[schema(read_only)]
    pub id: Option<String>,
    #[schema(schema_with = super::schema::label)]
    pub label: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_description)]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, max_items = 200)]
    pub setup_actions: Vec<SetupAction>,
    /// A license (JSON document as a string) overriding the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_license)]
    pub license: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub aws_key_pair_name: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_instance_profile_arn)]
    pub startup_instance_profile_arn: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_instance_profile_arn)]
    pub runtime_instance_profile_arn: Option<String>,
    #[serde(default = "yes")]
    pub restrict_aws_metadata_server_access: bool,
    #[serde(
        rename = "dataikuAwsAPIAccessMode",
        default,
        deserialize_with = "nullable"
    )]
    #[schema(nullable)]
    pub dataiku_aws_api_access_mode: AwsApiAccessMode,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dataiku_aws_keypair_storage_mode: KeypairStorageMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_access_key_id)]
    pub dataiku_aws_access_key_id: Option<String>,
    /// Write-only.
    #[serde(default, skip_serializing_if = "super::write_only")]
    #[schema(schema_with = super::schema::nullable_secret_access_key)]
    pub dataiku_aws_secret_access_key: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub has_dataiku_aws_secret_access_key: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_text_512)]
    pub dataiku_aws_secret_access_key_aws_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_region)]
    pub aws_secrets_manager_region: Option<String>,
    /// Read-only: how many instances use this template.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
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
            && (k.is_empty() || k.chars().count() > 255)
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
        // A field's shape is checked whenever it is given, whatever the mode.
        if let Some(key) = &self.dataiku_aws_access_key_id {
            super::account::check_access_key_id("dataikuAwsAccessKeyId", key)?;
        }
        if let Some(s) = &self.dataiku_aws_secret_access_key {
            super::account::check_secret_access_key("dataikuAwsSecretAccessKey", s)?;
        }
        if let Some(r) = &self.aws_secrets_manager_region {
            check_region("awsSecretsManagerRegion", r)?;
        }
        if let Some(n) = &self.dataiku_aws_secret_access_key_aws_secret_name {
            check_len("dataikuAwsSecretAccessKeyAwsSecretName", n, 512)?;
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
