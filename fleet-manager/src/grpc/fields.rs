//! Resources between the REST API's JSON documents and the gRPC messages:
//! typed fields by name, every other field in a `google.protobuf.Struct`
//! under its REST name; field masks (AIP-134) applied to documents; and a
//! client's request id (AIP-155) with its request's fingerprint.

use crate::app::ClientRequest;
use crate::error::{Error, Result};
use prost_types::value::Kind;
use prost_types::{FieldMask, ListValue, Struct, Value};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

/// A JSON document as a `Struct`.
pub fn to_struct(m: Map<String, Json>) -> Struct {
    Struct {
        fields: m.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(v: Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(to_struct(o)),
    };
    Value { kind: Some(kind) }
}

/// A `Struct` as a JSON document. Numbers without a fraction become
/// integers (a `Struct` has only doubles; the documents' counts and sizes
/// are integers).
pub fn from_struct(s: Struct) -> Map<String, Json> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, from_value(v)))
        .collect()
}

fn from_value(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                Json::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
            }
        }
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Json::Object(from_struct(s)),
    }
}

/// One typed field of a resource: its proto name and its REST name.
pub type Typed = (&'static str, &'static str);

/// Splits a document: the typed fields' values (by REST name) and the
/// rest as `settings`.
pub fn split(doc: Json, typed: &[Typed]) -> (Map<String, Json>, Struct) {
    let mut rest = match doc {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    let mut fields = Map::new();
    for (_, json) in typed {
        if let Some(v) = rest.remove(*json) {
            fields.insert(json.to_string(), v);
        }
    }
    (fields, to_struct(rest))
}

/// A document from a message's typed fields (by REST name) and settings.
/// A typed field also in `settings` is refused: it has one place.
pub fn join(
    fields: Map<String, Json>,
    settings: Option<Struct>,
    typed: &[Typed],
) -> Result<Map<String, Json>> {
    let mut doc = settings.map(from_struct).unwrap_or_default();
    for (proto, json) in typed {
        if doc.contains_key(*json) {
            return Err(Error::invalid(format!(
                "settings.{json}: give it as the field `{proto}`"
            )));
        }
    }
    doc.extend(fields);
    Ok(doc)
}

/// The document an update makes: `current` with the fields the mask names
/// taken from `given` (a field the mask names and `given` lacks is
/// removed, so it takes its default). An empty mask or `*` takes every
/// field of `given` but the output-only ones, which stay as they are.
pub fn apply_mask(
    mut current: Map<String, Json>,
    mut given: Map<String, Json>,
    mask: Option<&FieldMask>,
    typed: &[Typed],
    output_only: &[&str],
) -> Result<Map<String, Json>> {
    let paths: Vec<&str> = mask
        .map(|m| m.paths.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if paths.is_empty() || paths == ["*"] {
        for k in output_only {
            given.remove(*k);
            if let Some(v) = current.remove(*k) {
                given.insert(k.to_string(), v);
            }
        }
        return Ok(given);
    }
    let is_typed = |k: &str| typed.iter().any(|(_, j)| *j == k);
    for p in paths {
        let keys: Vec<String> = if let Some(key) = p.strip_prefix("settings.") {
            if key.is_empty() || key.contains('.') || is_typed(key) {
                return Err(bad_path(p));
            }
            vec![key.to_string()]
        } else if p == "settings" {
            current
                .keys()
                .chain(given.keys())
                .filter(|k| !is_typed(k))
                .cloned()
                .collect()
        } else {
            match typed.iter().find(|(proto, _)| *proto == p) {
                Some((_, json)) => vec![json.to_string()],
                None => return Err(bad_path(p)),
            }
        };
        for k in keys {
            if output_only.contains(&k.as_str()) {
                return Err(Error::invalid(format!("update_mask: '{p}' is output only")));
            }
            match given.remove(&k) {
                Some(v) => current.insert(k, v),
                None => current.remove(&k),
            };
        }
    }
    Ok(current)
}

fn bad_path(p: &str) -> Error {
    Error::invalid(format!(
        "update_mask: no field '{}' (typed fields by name, settings, or settings.<restField>)",
        p.escape_debug()
    ))
}

/// The model an update asks for: `current` (what the caller read) with
/// the mask's fields from `given` (see [`apply_mask`]).
pub fn masked_update<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    given: Map<String, Json>,
    mask: Option<&FieldMask>,
    typed: &[Typed],
    output_only: &[&str],
) -> Result<T> {
    let doc = match to_doc(current)? {
        Json::Object(m) => m,
        _ => return Err(Error::internal("a resource is not a JSON object")),
    };
    to_model(apply_mask(doc, given, mask, typed, output_only)?)
}

/// The options of a create: its request id (taken out of the request
/// before it is fingerprinted) and `validate_only`.
pub fn create_change<M: prost::Message>(
    method: &str,
    request_id: &str,
    validate_only: bool,
    rest: &M,
) -> Result<crate::app::Change> {
    Ok(crate::app::Change {
        validate_only,
        request: client_request(method, request_id, rest)?,
        etag: None,
    })
}

/// A document as the model it stands for; what the model refuses is the
/// caller's error.
pub fn to_model<T: serde::de::DeserializeOwned>(doc: Map<String, Json>) -> Result<T> {
    serde_json::from_value(Json::Object(doc)).map_err(|e| Error::invalid(e.to_string()))
}

/// A model as its JSON document.
pub fn to_doc<T: serde::Serialize>(v: &T) -> Result<Json> {
    serde_json::to_value(v).map_err(Error::internal)
}

/// The client's request id of a create, with the request's fingerprint
/// (its message without the id and without `validate_only`); none when
/// the id is empty.
pub fn client_request<M: prost::Message>(
    method: &str,
    request_id: &str,
    without_id: &M,
) -> Result<Option<ClientRequest>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    if request_id.len() > 128 || !request_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            "request_id must be 1 to 128 printable ASCII characters (a UUID is best)",
        ));
    }
    let digest = Sha256::digest(without_id.encode_to_vec());
    Ok(Some(ClientRequest {
        id: request_id.to_string(),
        method: method.to_string(),
        fingerprint: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TYPED: &[Typed] = &[("label", "label"), ("account_id", "accountId")];

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_document_goes_through_a_struct_unchanged_with_its_integers() {
        let doc = json!({"size": 100, "ratio": 0.5, "tags": ["a", {"k": null}], "on": true});
        assert_eq!(Json::Object(from_struct(to_struct(obj(doc.clone())))), doc);
    }

    #[test]
    fn typed_fields_split_out_and_join_back_and_are_refused_in_settings() {
        let doc = json!({"label": "n", "accountId": "ca-1", "awsVpcId": "vpc-1"});
        let (fields, settings) = split(doc.clone(), TYPED);
        assert_eq!(fields.len(), 2);
        assert_eq!(settings.fields.len(), 1);
        assert_eq!(
            Json::Object(join(fields.clone(), Some(settings), TYPED).unwrap()),
            doc
        );
        let twice = to_struct(obj(json!({"label": "x"})));
        let e = join(fields, Some(twice), TYPED).unwrap_err();
        assert!(e.message().contains("settings.label"), "{}", e.message());
    }

    #[test]
    fn a_mask_takes_only_the_fields_it_names_and_removes_those_given_without_a_value() {
        let current = obj(
            json!({"label": "a", "awsVpcId": "vpc-1", "awsSubnetId": "subnet-1", "nbInstances": 3}),
        );
        let given = obj(json!({"label": "b", "awsVpcId": "vpc-2"}));
        let mask = FieldMask {
            paths: vec!["label".into(), "settings.awsSubnetId".into()],
        };
        let out = apply_mask(
            current.clone(),
            given.clone(),
            Some(&mask),
            TYPED,
            &["nbInstances"],
        )
        .unwrap();
        assert_eq!(
            Json::Object(out),
            json!({"label": "b", "awsVpcId": "vpc-1", "nbInstances": 3})
        );
        // No mask: everything given, output-only fields kept.
        let out = apply_mask(current, given, None, TYPED, &["nbInstances"]).unwrap();
        assert_eq!(
            Json::Object(out),
            json!({"label": "b", "awsVpcId": "vpc-2", "nbInstances": 3})
        );
    }

    #[test]
    fn a_mask_naming_no_field_or_an_output_only_one_is_refused_by_name() {
        for p in ["nope", "settings.", "settings.label", "settings.a.b"] {
            let mask = FieldMask {
                paths: vec![p.into()],
            };
            let e = apply_mask(Map::new(), Map::new(), Some(&mask), TYPED, &[]).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{p}");
        }
        let mask = FieldMask {
            paths: vec!["settings.nbInstances".into()],
        };
        let e =
            apply_mask(Map::new(), Map::new(), Some(&mask), TYPED, &["nbInstances"]).unwrap_err();
        assert!(e.message().contains("output only"));
    }

    #[test]
    fn a_request_id_fingerprints_its_request_and_bad_ids_are_refused() {
        let a = prost_types::Struct::default();
        let r = client_request("M", "req-1", &a).unwrap().unwrap();
        assert_eq!(r.fingerprint.len(), 64);
        assert!(client_request("M", "", &a).unwrap().is_none());
        assert!(client_request("M", "has space", &a).is_err());
        assert!(client_request("M", &"x".repeat(129), &a).is_err());
    }
}
