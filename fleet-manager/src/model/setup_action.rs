//! Setup actions: the ordered steps an instance template asks the agent to
//! run on every provision. Each type's parameters are checked here.

use super::check_len;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// Every setup action type the public client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SetupActionType {
    RunAnsibleTasks,
    InstallSystemPackages,
    InstallDssPluginsFromStore,
    SetupK8sAndSpark,
    SetupRuntimeDatabase,
    SetupMusAutocreate,
    SetupUiCustomization,
    SetupMemorySettings,
    SetupGraphicsExport,
    AddAuthorizedKey,
    InstallJdbcDriver,
    SetupAdvancedSecurity,
    SetupInstanceName,
    SetupNoneK8sAndSpark,
    SetupSecureCookies,
    AddEnvVariables,
    AddProperties,
    AddSshKey,
    AddCaToTruststore,
    SetupProxy,
    InstallCodeEnvWithPreset,
    UpdateDssPort,
    InstallDeprecatedPython,
}

/// When the agent runs a setup action, relative to the node's install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeInstall,
    AfterInstall,
    AfterDssStartup,
}

impl Stage {
    /// The stage's name in the agent protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::BeforeInstall => "before_install",
            Stage::AfterInstall => "after_install",
            Stage::AfterDssStartup => "after_dss_startup",
        }
    }
}

impl SetupActionType {
    /// The type's name on the wire (`RUN_ANSIBLE_TASKS`).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The stage an action of this type runs in: Ansible tasks where their
    /// `stage` parameter says (after install by default), keys, CAs and
    /// system packages before the install, everything else after it.
    pub fn stage(self, params: Option<&Map<String, Value>>) -> Stage {
        use SetupActionType as T;
        match self {
            T::RunAnsibleTasks => match params.and_then(|p| p.get("stage")).and_then(Value::as_str)
            {
                Some("before_install") => Stage::BeforeInstall,
                Some("after_dss_startup") => Stage::AfterDssStartup,
                _ => Stage::AfterInstall,
            },
            T::AddAuthorizedKey
            | T::AddSshKey
            | T::AddCaToTruststore
            | T::InstallSystemPackages => Stage::BeforeInstall,
            T::InstallDssPluginsFromStore
            | T::SetupK8sAndSpark
            | T::SetupRuntimeDatabase
            | T::SetupMusAutocreate
            | T::SetupUiCustomization
            | T::SetupMemorySettings
            | T::SetupGraphicsExport
            | T::InstallJdbcDriver
            | T::SetupAdvancedSecurity
            | T::SetupInstanceName
            | T::SetupNoneK8sAndSpark
            | T::SetupSecureCookies
            | T::AddEnvVariables
            | T::AddProperties
            | T::SetupProxy
            | T::InstallCodeEnvWithPreset
            | T::UpdateDssPort
            | T::InstallDeprecatedPython => Stage::AfterInstall,
        }
    }
}

fn enabled_default() -> bool {
    true
}

/// One setup action of a template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetupAction {
    #[serde(rename = "type")]
    pub action_type: SetupActionType,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    #[serde(default = "enabled_default", deserialize_with = "enabled_or_default")]
    #[schema(nullable)]
    pub enabled: bool,
}

fn enabled_or_default<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// Reads typed parameters of one action, naming the action in every error.
struct Params<'a> {
    at: String,
    map: &'a Map<String, Value>,
}

impl<'a> Params<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}: {msg}", self.at))
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                check_len(&format!("{}.params.{key}", self.at), s, 1 << 16)?;
                Ok(Some(s.as_str()))
            }
            Some(_) => Err(self.err(format!("params.{key} must be a string"))),
        }
    }

    fn str(&self, key: &str) -> Result<&'a str> {
        match self.opt_str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(self.err(format!("params.{key} is required"))),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<()> {
        match self.map.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
            Some(_) => Err(self.err(format!("params.{key} must be true or false"))),
        }
    }

    fn opt_str_list(&self, key: &str) -> Result<Vec<&'a str>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| self.err(format!("params.{key} must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(self.err(format!("params.{key} must be a list of strings"))),
        }
    }

    fn opt_str_map(&self, key: &str) -> Result<()> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
            Some(_) => Err(self.err(format!("params.{key} must be an object of strings"))),
        }
    }

    /// A list of `{key, value}` objects with non-empty keys.
    fn key_values(&self, key: &str, key_ok: impl Fn(&str) -> bool) -> Result<()> {
        let items = match self.map.get(key) {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(self.err(format!(
                    "params.{key} must be a list of {{key, value}} objects"
                )));
            }
        };
        for item in items {
            let k = item.get("key").and_then(Value::as_str);
            let v = item.get("value");
            match (k, v) {
                (Some(k), Some(Value::String(_))) if key_ok(k) => {}
                (Some(k), Some(Value::String(_))) => {
                    return Err(self.err(format!(
                        "params.{key}: '{}' is not a valid name",
                        k.escape_debug()
                    )));
                }
                _ => {
                    return Err(self.err(format!(
                        "params.{key} must be a list of {{key, value}} objects with string values"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.as_bytes()[0].is_ascii_digit()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Java properties key the agent can write as one: no separator
/// (`=`, `:`, a blank), no escape, not a comment.
fn is_property_name(k: &str) -> bool {
    !k.is_empty()
        && !k.contains(['=', ':', '\\', ' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        && !k.starts_with(['#', '!'])
}

fn check_url(p: &Params<'_>, key: &str, schemes: &[&str]) -> Result<()> {
    let url = p.str(key)?;
    match url.split_once("://") {
        Some((s, rest))
            if schemes.contains(&s.to_ascii_lowercase().as_str()) && !rest.is_empty() =>
        {
            Ok(())
        }
        _ => Err(p.err(format!(
            "params.{key} '{}' must be a URL with scheme {}",
            url.escape_debug(),
            schemes.join(", ")
        ))),
    }
}

/// What [`SetupAction::validate`] asks of each type's parameters, as JSON
/// Schema for the OpenAPI document: one branch per type with its params'
/// required keys, types, shapes and lengths (an action matches the branch
/// of its type), and one for the types whose params are free.
pub fn params_rules() -> Vec<Value> {
    use super::schema::{nonblank_json, relative_path_json, text_json, text_with_json, url_json};
    use SetupActionType as T;
    const MAX: usize = 1 << 16;
    let text = || json!({"oneOf": [{"type": "null"}, text_json(MAX)]});
    let flag = || json!({"type": ["boolean", "null"]});
    let strings = || json!({"type": ["array", "null"], "items": {"type": "string"}});
    let key_values = |key: &str| {
        json!({"type": "array", "items": {"type": "object", "required": ["key", "value"],
            "properties": {"key": {"type": "string", "pattern": key}, "value": {"type": "string"}}}})
    };
    let rule = |t: T, required: &[&str], props: Value| -> Value {
        let name = serde_json::to_value(t).unwrap_or_default();
        let mut params = json!({"type": "object", "properties": props});
        if required.is_empty() {
            params["type"] = json!(["object", "null"]);
            json!({"properties": {"type": {"const": name}, "params": params}, "required": ["type"]})
        } else {
            params["required"] = json!(required);
            json!({"properties": {"type": {"const": name}, "params": params}, "required": ["type", "params"]})
        }
    };
    let free: Vec<Value> = [
        T::SetupK8sAndSpark,
        T::SetupNoneK8sAndSpark,
        T::SetupRuntimeDatabase,
        T::SetupMusAutocreate,
        T::SetupUiCustomization,
        T::SetupMemorySettings,
        T::SetupGraphicsExport,
        T::SetupSecureCookies,
    ]
    .into_iter()
    .map(|t| serde_json::to_value(t).unwrap_or_default())
    .collect();
    vec![
        rule(
            T::AddAuthorizedKey,
            &["sshKey"],
            json!({"sshKey": {"type": "string", "maxLength": MAX,
            "pattern": r"^[\t\r ]*(ssh-|ecdsa-|sk-)[^\x00-\x08\x0A-\x0C\x0E-\x1F\x7F-\x9F]*$"}}),
        ),
        rule(
            T::AddSshKey,
            &["sshKey"],
            json!({"sshKey": nonblank_json(MAX)}),
        ),
        rule(
            T::RunAnsibleTasks,
            &["stage", "ansibleTasks"],
            json!({
            "stage": {"enum": ["before_install", "after_install", "after_dss_startup"]},
            "ansibleTasks": nonblank_json(MAX)}),
        ),
        rule(
            T::InstallSystemPackages,
            &["packages"],
            json!({"packages": {"type": "array", "minItems": 1,
            "items": {"type": "string", "pattern": r"^[A-Za-z0-9+._:=*][A-Za-z0-9+\-._:=*]*$"}}}),
        ),
        rule(
            T::SetupAdvancedSecurity,
            &[],
            json!({"basic_headers": flag(), "hsts": flag()}),
        ),
        rule(
            T::InstallDeprecatedPython,
            &[],
            json!({"install_py36": flag(), "install_py37": flag(), "install_py38": flag()}),
        ),
        rule(
            T::InstallJdbcDriver,
            &["url", "dbType"],
            json!({
            "url": url_json(MAX, &["http", "https", "s3", "file"]),
            "dbType": {"enum": ["mysql", "mssql", "oracle", "mariadb", "snowflake", "athena", "bigquery"]},
            "pathsInArchive": strings(),
            // Read back masked; sent back masked, the stored value is kept.
            "headers": {"oneOf": [
                {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                {"const": MASK},
            ]},
            "username": text(),
            "password": text(),
            "subpathInDatadir": {"oneOf": [{"type": "null"}, relative_path_json(MAX)]}}),
        ),
        rule(
            T::AddEnvVariables,
            &["variables"],
            json!({"variables": key_values("^[A-Za-z_][A-Za-z0-9_]*$")}),
        ),
        rule(
            T::AddProperties,
            &["properties"],
            json!({"properties": key_values("^[^=:\\\\#! \t\n\r\x0b\x0c][^=:\\\\ \t\n\r\x0b\x0c]*$")}),
        ),
        {
            let proxy = || json!({"oneOf": [{"type": "null"}, url_json(MAX, &["http", "https", "socks5"])]});
            let mut r = rule(
                T::SetupProxy,
                &["x"],
                json!({"httpProxy": proxy(), "httpsProxy": proxy(), "noProxy": text()}),
            );
            r["properties"]["params"]
                .as_object_mut()
                .map(|p| p.remove("required"));
            r["properties"]["params"]["anyOf"] = json!([
                {"required": ["httpProxy"], "properties": {"httpProxy": {"type": "string"}}},
                {"required": ["httpsProxy"], "properties": {"httpsProxy": {"type": "string"}}},
            ]);
            r
        },
        rule(
            T::AddCaToTruststore,
            &["cert"],
            json!({"cert": text_with_json(MAX, "-----BEGIN CERTIFICATE-----")}),
        ),
        rule(
            T::UpdateDssPort,
            &["dssPort"],
            json!({"dssPort": {"type": "integer", "minimum": 1, "maximum": 65525}}),
        ),
        rule(
            T::InstallCodeEnvWithPreset,
            &["presetName"],
            json!({"presetName": nonblank_json(MAX)}),
        ),
        rule(
            T::InstallDssPluginsFromStore,
            &[],
            json!({"packages": strings()}),
        ),
        rule(
            T::SetupInstanceName,
            &["instanceName"],
            json!({"instanceName": nonblank_json(MAX)}),
        ),
        json!({"properties": {"type": {"enum": free}, "params": {"type": ["object", "null"]}}, "required": ["type"]}),
    ]
}

/// What a secret parameter reads as through the API.
pub const MASK: &str = "********";
/// How a sealed parameter value starts in the stored template.
pub const SEALED_PREFIX: &str = "fm-sealed:";

impl SetupAction {
    /// The parameters of this action that are secrets: stored sealed,
    /// read back as [`MASK`], unsealed only in the command to the agent.
    pub fn secret_params(&self) -> &'static [&'static str] {
        match self.action_type {
            SetupActionType::InstallJdbcDriver => &["password", "headers"],
            SetupActionType::AddSshKey => &["sshKey"],
            _ => &[],
        }
    }

    /// Checks the parameters this action's type needs.
    pub fn validate(&self, index: usize) -> Result<()> {
        let empty = Map::new();
        let p = Params {
            at: format!("setupActions[{index}] ({})", self.type_name()),
            map: self.params.as_ref().unwrap_or(&empty),
        };
        use SetupActionType::*;
        match self.action_type {
            AddAuthorizedKey => {
                let key = p.str("sshKey")?;
                let kind = key.split_whitespace().next().unwrap_or_default();
                if !(kind.starts_with("ssh-")
                    || kind.starts_with("ecdsa-")
                    || kind.starts_with("sk-"))
                {
                    return Err(p.err("params.sshKey must be an OpenSSH public key (ssh-ed25519 AAAA..., ssh-rsa ...)"));
                }
                if key.contains('\n') {
                    return Err(p.err("params.sshKey must be a single line"));
                }
            }
            AddSshKey => {
                p.str("sshKey")?;
            }
            RunAnsibleTasks => {
                let stage = p.str("stage")?;
                if !["before_install", "after_install", "after_dss_startup"].contains(&stage) {
                    return Err(p.err(format!(
                        "params.stage '{}' must be before_install, after_install or after_dss_startup",
                        stage.escape_debug()
                    )));
                }
                p.str("ansibleTasks")?;
            }
            InstallSystemPackages => {
                let packages = p.opt_str_list("packages")?;
                if packages.is_empty() {
                    return Err(p.err("params.packages must list at least one package"));
                }
                for pkg in packages {
                    // A leading `-` would be an option to apt or yum.
                    let ok = !pkg.is_empty()
                        && !pkg.starts_with('-')
                        && pkg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-._:=*".contains(&b));
                    if !ok {
                        return Err(
                            p.err(format!("'{}' is not a package name", pkg.escape_debug()))
                        );
                    }
                }
            }
            SetupAdvancedSecurity => {
                p.opt_bool("basic_headers")?;
                p.opt_bool("hsts")?;
            }
            InstallDeprecatedPython => {
                for k in ["install_py36", "install_py37", "install_py38"] {
                    p.opt_bool(k)?;
                }
            }
            InstallJdbcDriver => {
                check_url(&p, "url", &["http", "https", "s3", "file"])?;
                let db = p.str("dbType")?;
                if ![
                    "mysql",
                    "mssql",
                    "oracle",
                    "mariadb",
                    "snowflake",
                    "athena",
                    "bigquery",
                ]
                .contains(&db)
                {
                    return Err(p.err(format!(
                        "params.dbType '{}' is not a known database type",
                        db.escape_debug()
                    )));
                }
                p.opt_str_list("pathsInArchive")?;
                p.opt_str_map("headers")?;
                p.opt_str("username")?;
                p.opt_str("password")?;
                if let Some(sub) = p.opt_str("subpathInDatadir")?
                    && (sub.starts_with('/') || sub.split('/').any(|c| c == ".."))
                {
                    return Err(p.err(
                        "params.subpathInDatadir must be a relative path inside the data directory",
                    ));
                }
            }
            AddEnvVariables => p.key_values("variables", is_env_name)?,
            AddProperties => p.key_values("properties", is_property_name)?,
            SetupProxy => {
                for k in ["httpProxy", "httpsProxy"] {
                    if p.opt_str(k)?.is_some() {
                        check_url(&p, k, &["http", "https", "socks5"])?;
                    }
                }
                p.opt_str("noProxy")?;
                if p.opt_str("httpProxy")?.is_none() && p.opt_str("httpsProxy")?.is_none() {
                    return Err(p.err("params needs httpProxy or httpsProxy"));
                }
            }
            AddCaToTruststore => {
                let cert = p.str("cert")?;
                if !cert.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(p.err("params.cert must be a PEM certificate"));
                }
            }
            UpdateDssPort => match p.map.get("dssPort") {
                Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (1..=65525).contains(&v)) => {}
                _ => return Err(p.err("params.dssPort must be a port number")),
            },
            InstallCodeEnvWithPreset => {
                p.str("presetName")?;
            }
            InstallDssPluginsFromStore => {
                p.opt_str_list("packages")?;
            }
            SetupInstanceName => {
                p.str("instanceName")?;
            }
            SetupK8sAndSpark | SetupNoneK8sAndSpark | SetupRuntimeDatabase | SetupMusAutocreate
            | SetupUiCustomization | SetupMemorySettings | SetupGraphicsExport
            | SetupSecureCookies => {}
        }
        Ok(())
    }

    fn type_name(&self) -> String {
        serde_json::to_value(self.action_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_runs_in_its_stage_and_ansible_where_its_stage_says() {
        let stage = |t: SetupActionType, p: serde_json::Value| t.stage(p.as_object());
        use SetupActionType as T;
        assert_eq!(stage(T::AddAuthorizedKey, json!({})), Stage::BeforeInstall);
        assert_eq!(stage(T::AddCaToTruststore, json!({})), Stage::BeforeInstall);
        assert_eq!(stage(T::SetupProxy, json!({})), Stage::AfterInstall);
        assert_eq!(stage(T::RunAnsibleTasks, json!({})), Stage::AfterInstall);
        assert_eq!(
            stage(T::RunAnsibleTasks, json!({"stage": "before_install"})),
            Stage::BeforeInstall
        );
        assert_eq!(
            stage(T::RunAnsibleTasks, json!({"stage": "after_dss_startup"})),
            Stage::AfterDssStartup
        );
        assert_eq!(T::InstallJdbcDriver.as_str(), "INSTALL_JDBC_DRIVER");
    }
    use serde_json::json;

    fn action(v: Value) -> Result<()> {
        let a: SetupAction =
            serde_json::from_value(v).map_err(|e| Error::invalid(e.to_string()))?;
        a.validate(0)
    }

    #[test]
    fn authorized_key_must_look_like_a_public_key() {
        assert!(
            action(
                json!({"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "ssh-ed25519 AAAAC3 me"}})
            )
            .is_ok()
        );
        let err = action(json!({"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "hello"}}))
            .unwrap_err();
        assert!(
            err.message()
                .contains("setupActions[0] (ADD_AUTHORIZED_KEY)"),
            "{}",
            err.message()
        );
        assert!(action(json!({"type": "ADD_AUTHORIZED_KEY", "params": {}})).is_err());
    }

    #[test]
    fn option_like_packages_and_unwritable_property_names_are_refused() {
        let pkg = |p: &str| {
            action(json!({"type": "INSTALL_SYSTEM_PACKAGES", "params": {"packages": [p]}}))
        };
        assert!(pkg("libpq-dev").is_ok());
        assert!(pkg("-o").is_err() && pkg("--allow-unauthenticated").is_err());
        let prop = |k: &str| {
            action(
                json!({"type": "ADD_PROPERTIES", "params": {"properties": [{"key": k, "value": "v"}]}}),
            )
        };
        assert!(prop("a.b-c").is_ok());
        for bad in ["a b", "a\\b", "#c", "!c", "a\tb", "a:b"] {
            assert!(prop(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ansible_stage_must_be_known() {
        assert!(action(json!({"type": "RUN_ANSIBLE_TASKS", "params": {"stage": "after_install", "ansibleTasks": "- debug: msg=x"}})).is_ok());
        assert!(action(json!({"type": "RUN_ANSIBLE_TASKS", "params": {"stage": "whenever", "ansibleTasks": "x"}})).is_err());
    }

    #[test]
    fn jdbc_driver_url_scheme_and_subpath_are_checked() {
        let ok = json!({"type": "INSTALL_JDBC_DRIVER", "params": {"url": "https://x/d.jar", "dbType": "mysql", "pathsInArchive": null, "headers": null, "username": null, "password": null, "subpathInDatadir": "lib/jdbc"}});
        assert!(action(ok).is_ok());
        assert!(action(json!({"type": "INSTALL_JDBC_DRIVER", "params": {"url": "ftp://x", "dbType": "mysql"}})).is_err());
        assert!(action(json!({"type": "INSTALL_JDBC_DRIVER", "params": {"url": "file:///x.jar", "dbType": "mysql", "subpathInDatadir": "../../etc"}})).is_err());
    }

    #[test]
    fn env_variables_need_valid_names() {
        assert!(action(json!({"type": "ADD_ENV_VARIABLES", "params": {"variables": [{"key": "JAVA_OPTS", "value": "-Xmx1g"}]}})).is_ok());
        assert!(action(json!({"type": "ADD_ENV_VARIABLES", "params": {"variables": [{"key": "1BAD", "value": "x"}]}})).is_err());
    }

    #[test]
    fn unknown_type_is_refused_by_deserialization() {
        assert!(action(json!({"type": "MAKE_COFFEE"})).is_err());
    }

    #[test]
    fn enabled_defaults_to_true() {
        let a: SetupAction =
            serde_json::from_value(json!({"type": "SETUP_K8S_AND_SPARK"})).unwrap();
        assert!(a.enabled);
    }
}
