//! What a create or an update says: a document with the REST API's field
//! names, from a JSON file and `--set name=value` flags, secrets from the
//! environment or a file (never on the command line, where `ps` shows
//! them).

use crate::error::{Error, Result};
use crate::grpc::fields::{Typed, split};
use prost_types::{FieldMask, Struct};
use serde_json::{Map, Value as Json};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct Fields {
    /// A JSON document of the resource, with the REST API's field names
    /// (`-`: standard input).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// A field, `name=value` (REST name; the value is read as JSON when it
    /// is JSON: `dataVolumeSizeGB=60`, `fmTags=["a","b"]`, else as text).
    /// Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// A field whose text is an environment variable's value,
    /// `name=VARIABLE` (for secrets). Repeatable.
    #[arg(long = "set-from-env", value_name = "NAME=VARIABLE")]
    pub set_from_env: Vec<String>,
    /// A field whose text is a file's first line, `name=PATH` (for
    /// secrets). Repeatable.
    #[arg(long = "set-from-file", value_name = "NAME=PATH")]
    pub set_from_file: Vec<String>,
}

fn pair<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => Err(Error::invalid(format!(
            "--{flag} {s}: give it as name=value"
        ))),
    }
}

impl Fields {
    /// The document they say, in order: the file, then each flag (a later
    /// one wins).
    pub fn doc(&self) -> Result<Map<String, Json>> {
        let mut doc = match &self.file {
            None => Map::new(),
            Some(p) => {
                let text = if p.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).map_err(Error::internal)?
                } else {
                    std::fs::read_to_string(p)
                        .map_err(|e| Error::invalid(format!("can't read {}: {e}", p.display())))?
                };
                match serde_json::from_str(&text) {
                    Ok(Json::Object(m)) => m,
                    Ok(_) => {
                        return Err(Error::invalid(format!(
                            "{}: a resource is a JSON object",
                            p.display()
                        )));
                    }
                    Err(e) => {
                        return Err(Error::invalid(format!("{} is not JSON: {e}", p.display())));
                    }
                }
            }
        };
        for s in &self.set {
            let (k, v) = pair("set", s)?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| Json::String(v.to_string()));
            doc.insert(k.to_string(), value);
        }
        for s in &self.set_from_env {
            let (k, var) = pair("set-from-env", s)?;
            let v = std::env::var(var)
                .map_err(|_| Error::invalid(format!("--set-from-env {k}: ${var} is not set")))?;
            doc.insert(k.to_string(), Json::String(v));
        }
        for s in &self.set_from_file {
            let (k, path) = pair("set-from-file", s)?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::invalid(format!("--set-from-file {k}: can't read {path}: {e}"))
            })?;
            let line = text.lines().next().unwrap_or_default().to_string();
            doc.insert(k.to_string(), Json::String(line));
        }
        Ok(doc)
    }

    /// Whether they say anything.
    pub fn is_empty(&self) -> bool {
        self.file.is_none()
            && self.set.is_empty()
            && self.set_from_env.is_empty()
            && self.set_from_file.is_empty()
    }
}

/// A document as a message's typed fields (by REST name) and settings.
pub fn typed_and_settings(doc: Map<String, Json>, typed: &[Typed]) -> (Map<String, Json>, Struct) {
    split(Json::Object(doc), typed)
}

/// The mask of an update that changes exactly the document's fields.
pub fn mask_of(doc: &Map<String, Json>, typed: &[Typed]) -> FieldMask {
    let paths = doc
        .keys()
        .map(|k| match typed.iter().find(|(_, rest)| rest == k) {
            Some((proto, _)) => proto.to_string(),
            None => format!("settings.{k}"),
        })
        .collect();
    FieldMask { paths }
}

/// A typed text field.
pub fn text(f: &Map<String, Json>, k: &str) -> Result<String> {
    match f.get(k) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::invalid(format!("{k} is text, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPED: &[Typed] = &[("label", "label"), ("image_id", "imageId")];

    #[test]
    fn flags_read_json_values_and_text_and_a_later_one_wins() {
        let f = Fields {
            set: vec![
                "dataVolumeSizeGB=60".into(),
                "label=web".into(),
                "fmTags=[\"a\"]".into(),
                "label=api".into(),
            ],
            ..Default::default()
        };
        let doc = f.doc().unwrap();
        assert_eq!(doc["dataVolumeSizeGB"], 60);
        assert_eq!(doc["label"], "api");
        assert_eq!(doc["fmTags"], serde_json::json!(["a"]));
        let bad = Fields {
            set: vec!["novalue".into()],
            ..Default::default()
        };
        assert!(bad.doc().unwrap_err().message().contains("name=value"));
    }

    #[test]
    fn a_secret_comes_from_the_environment_and_a_missing_one_is_named() {
        let f = Fields {
            set_from_env: vec!["awsSecretAccessKey=FM_CLI_TEST_NOT_SET_ANYWHERE".into()],
            ..Default::default()
        };
        let e = f.doc().unwrap_err().message();
        assert!(e.contains("FM_CLI_TEST_NOT_SET_ANYWHERE"), "{e}");
    }

    #[test]
    fn an_update_masks_exactly_the_fields_it_gives() {
        let mut doc = Map::new();
        doc.insert("imageId".into(), "img-2".into());
        doc.insert("dataVolumeSizeGB".into(), 80.into());
        let mut paths = mask_of(&doc, TYPED).paths;
        paths.sort();
        assert_eq!(paths, ["image_id", "settings.dataVolumeSizeGB"]);
        let (typed, settings) = typed_and_settings(doc, TYPED);
        assert_eq!(typed["imageId"], "img-2");
        assert!(settings.fields.contains_key("dataVolumeSizeGB"));
    }
}
