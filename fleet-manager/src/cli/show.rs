//! What the CLI prints: a table (the default, for people) or JSON (for
//! scripts: one document, the resource's fields in camelCase with its
//! `settings` as an object; a list is an array).

use crate::error::{Error, Result};
use crate::human::time;
use fm_proto::fleet::{
    Backup, CloudAccount, Image, Instance, InstanceEvent, InstanceTemplate, Operation, Rollout,
    Snapshot, VirtualNetwork,
};
use serde_json::Value as Json;
use std::io::Write;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// A resource as a table row.
pub trait Row: serde::Serialize {
    const COLUMNS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

fn when(ms: i64) -> String {
    if ms <= 0 { "-".into() } else { time(ms) }
}

fn bytes(n: i64) -> String {
    crate::human::bytes(n.max(0) as u64)
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn setting(s: &Option<prost_types::Struct>, k: &str) -> String {
    match s
        .as_ref()
        .and_then(|s| s.fields.get(k))
        .and_then(|v| v.kind.as_ref())
    {
        Some(prost_types::value::Kind::StringValue(v)) => v.clone(),
        _ => "-".into(),
    }
}

impl Row for Instance {
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "LABEL",
        "NODE TYPE",
        "IMAGE",
        "TEMPLATE",
        "NETWORK",
        "TAGS",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.label.clone(),
            self.dss_node_type.clone(),
            self.image_id.clone(),
            self.instance_settings_template_id.clone(),
            self.virtual_network_id.clone(),
            or_dash(&self.fm_tags.join(",")),
        ]
    }
}

impl Row for VirtualNetwork {
    const COLUMNS: &'static [&'static str] = &["ID", "LABEL", "REGION", "ACCOUNT", "INSTANCES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.label.clone(),
            setting(&self.settings, "awsRegion"),
            or_dash(&self.account_id),
            self.nb_instances.to_string(),
        ]
    }
}

impl Row for InstanceTemplate {
    const COLUMNS: &'static [&'static str] = &["ID", "LABEL", "INSTANCES"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.label.clone(),
            self.nb_instances.to_string(),
        ]
    }
}

impl Row for CloudAccount {
    const COLUMNS: &'static [&'static str] = &["ID", "LABEL", "AUTHENTICATION", "NETWORKS"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.label.clone(),
            setting(&self.settings, "awsAuthenticationMode"),
            self.nb_networks.to_string(),
        ]
    }
}

impl Row for Image {
    const COLUMNS: &'static [&'static str] = &["ID", "LABEL", "NODE VERSION"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.label.clone(),
            self.node_version.clone(),
        ]
    }
}

impl Row for Snapshot {
    const COLUMNS: &'static [&'static str] =
        &["ID", "TAKEN", "NODE VERSION", "SIZE", "AUTOMATED", "REASON"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            when(self.created_at_ms),
            or_dash(&self.node_version),
            if self.size_bytes > 0 {
                bytes(self.size_bytes)
            } else {
                "-".into()
            },
            self.automated.to_string(),
            or_dash(&self.reason),
        ]
    }
}

impl Row for Backup {
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "TAKEN",
        "NODE VERSION",
        "FILES",
        "DATA",
        "ARCHIVE",
        "VERIFIED",
        "REASON",
    ];
    fn cells(&self) -> Vec<String> {
        let verified = match &self.last_verification {
            None => "never".to_string(),
            Some(v) => match v.ok {
                Some(true) => format!("ok {}", when(v.verified_at_ms)),
                Some(false) => format!("FAILED {}", when(v.verified_at_ms)),
                None => "running".to_string(),
            },
        };
        vec![
            self.id.clone(),
            when(self.created_at_ms),
            self.node_version.clone(),
            self.files.to_string(),
            bytes(self.data_size_bytes),
            bytes(self.archive_size_bytes),
            verified,
            or_dash(&self.reason),
        ]
    }
}

impl Row for Operation {
    const COLUMNS: &'static [&'static str] =
        &["OPERATION", "KIND", "TARGET", "STATE", "%", "ERROR"];
    fn cells(&self) -> Vec<String> {
        let error = if self.error_type.is_empty() {
            "-".to_string()
        } else {
            format!("{}: {}", self.error_type, self.error_message)
        };
        vec![
            self.name.clone(),
            self.kind.clone(),
            self.target_id.clone(),
            self.state.clone(),
            self.percent.to_string(),
            error,
        ]
    }
}

impl Row for Rollout {
    const COLUMNS: &'static [&'static str] = &[
        "ID", "LABEL", "ACTION", "STATE", "TARGETS", "DONE", "RUNNING", "FAILED", "SKIPPED",
    ];
    fn cells(&self) -> Vec<String> {
        let c = self.counts.unwrap_or_default();
        let action = self
            .spec
            .as_ref()
            .and_then(|s| s.action.as_ref())
            .map(|a| a.r#type.clone())
            .unwrap_or_default();
        vec![
            self.id.clone(),
            or_dash(&self.label),
            action,
            self.state.clone(),
            c.targets.to_string(),
            c.done.to_string(),
            c.running.to_string(),
            c.failed.to_string(),
            c.skipped.to_string(),
        ]
    }
}

/// A rollout: its fields, then a table of its targets (or its JSON).
pub fn rollout(how: Output, r: &Rollout) -> Result<()> {
    if how == Output::Json {
        return one(how, r);
    }
    let mut head = r.clone();
    head.targets.clear();
    let v = json_of(&head)?;
    let mut lines = Vec::new();
    flatten("", &v, &mut lines);
    lines.retain(|(k, _)| k != "targets");
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text: String = lines
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect();
    if !r.targets.is_empty() {
        let rows: Vec<Vec<String>> = r
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.instance_id.clone(),
                    if t.canary {
                        "canary".into()
                    } else {
                        "-".into()
                    },
                    t.state.clone(),
                    or_dash(&t.operation_id),
                    or_dash(&t.error),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(
            &["INSTANCE", "CANARY", "STATE", "OPERATION", "ERROR"],
            &rows,
        ));
    }
    write(&text)
}

fn write(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::internal(format!("can't write to stdout: {e}")))
}

fn json_of(v: &impl serde::Serialize) -> Result<Json> {
    serde_json::to_value(v).map_err(Error::internal)
}

/// One event of a watch, as it comes: a line, or a JSON object per line.
pub fn event(how: Output, e: &InstanceEvent) -> Result<()> {
    match how {
        Output::Json => {
            let v = serde_json::to_string(e).map_err(Error::internal)?;
            write(&format!("{v}\n"))
        }
        Output::Table => {
            let error = if e.error.is_empty() {
                String::new()
            } else {
                format!(" {}", e.error)
            };
            write(&format!(
                "{} {} {} {} {} {}{error}\n",
                e.event_id,
                when(e.at_ms),
                e.instance_id,
                e.kind,
                e.operation,
                e.state
            ))
        }
    }
}

/// Rows under their header, each column as wide as its widest cell.
pub fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(columns.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a list.
pub fn list<T: Row>(how: Output, items: &[T]) -> Result<()> {
    match how {
        Output::Json => {
            let v = serde_json::to_string_pretty(items).map_err(Error::internal)?;
            write(&format!("{v}\n"))
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Row::cells).collect();
            write(&table(T::COLUMNS, &rows))
        }
    }
}

/// Prints one resource: every field, one per line (nested ones by their
/// dotted path), or its JSON.
pub fn one(how: Output, item: &impl serde::Serialize) -> Result<()> {
    let v = json_of(item)?;
    match how {
        Output::Json => {
            let s = serde_json::to_string_pretty(&v).map_err(Error::internal)?;
            write(&format!("{s}\n"))
        }
        Output::Table => {
            let mut lines = Vec::new();
            flatten("", &v, &mut lines);
            let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let text: String = lines
                .iter()
                .map(|(k, v)| format!("{k:<w$}  {v}\n"))
                .collect();
            write(&text)
        }
    }
}

fn flatten(prefix: &str, v: &Json, out: &mut Vec<(String, String)>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Json::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_and_trims_each_line() {
        let t = table(
            &["ID", "LABEL", "TAGS"],
            &[
                vec!["i-1".into(), "web".into(), "-".into()],
                vec!["i-22".into(), "a longer one".into(), "x,y".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    LABEL         TAGS\ni-1   web           -\ni-22  a longer one  x,y\n"
        );
    }

    #[test]
    fn an_unset_time_prints_as_a_dash() {
        assert_eq!(when(0), "-");
        assert_eq!(when(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn a_resource_prints_as_camel_case_json_with_its_settings_as_an_object() {
        let mut s = prost_types::Struct::default();
        s.fields.insert(
            "dataVolumeSizeGB".into(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(60.0)),
            },
        );
        let i = Instance {
            id: "i-1".into(),
            dss_node_type: "design".into(),
            settings: Some(s),
            ..Default::default()
        };
        let v = json_of(&i).unwrap();
        assert_eq!(v["dssNodeType"], "design");
        assert_eq!(v["settings"]["dataVolumeSizeGB"], 60);
        let mut lines = Vec::new();
        flatten("", &v, &mut lines);
        assert!(lines.contains(&("settings.dataVolumeSizeGB".into(), "60".into())));
    }
}
