//! What the create forms share: reading a form into the public API's JSON
//! document (so the same model and the same `App` checks apply), and
//! putting the API's validation message beside the field it names.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A form as submitted: its fields in order (a field may repeat).
pub type Fields = Vec<(String, String)>;

/// The first value of `name`, trimmed; none when absent or empty.
pub fn text(f: &Fields, name: &str) -> Option<String> {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the checkbox `name` is ticked.
pub fn ticked(f: &Fields, name: &str) -> bool {
    f.iter()
        .any(|(k, v)| k == name && v != "off" && v != "false")
}

/// A comma- or space-separated list.
pub fn list(f: &Fields, name: &str) -> Vec<String> {
    text(f, name)
        .map(|v| {
            v.split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON document `doc` read as the public API's type `T`; a mistake
/// is an `InvalidInput` naming the field, as the REST surface says it.
pub fn decode<T: DeserializeOwned>(doc: Map<String, Value>) -> Result<T> {
    let v = Value::Object(doc);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid(format!("'{path}': {}", e.inner()))
    })
}

/// A message to show beside the field it names, or above the form.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub message: String,
}

impl Problem {
    pub fn of(e: &Error) -> Problem {
        Problem {
            message: e.message(),
        }
    }

    /// Whether the message is about `field`: it starts with the field's
    /// name (`'label' …`, `label must …`, `virtualNetworkId: …`,
    /// `'setupActions[1].type' …`).
    pub fn names(&self, field: &str) -> bool {
        let m = self.message.strip_prefix('\'').unwrap_or(&self.message);
        m.strip_prefix(field)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ':', '\'', '[', '.']))
    }
}

/// A page with a form: its fields, and the problem of the last try. Its
/// template shows `err(field)` beside each field and `general()` above.
pub trait FormPage {
    /// The fields that show their own message.
    const FIELDS: &'static [&'static str];

    fn problem(&self) -> &Option<Problem>;

    fn err(&self, field: &str) -> &str {
        about(self.problem(), field)
    }

    fn general(&self) -> &str {
        general(self.problem(), Self::FIELDS)
    }
}

/// The form again (400), with why it was refused beside its field; the
/// audit row notes the error.
pub fn refused<T: askama::Template>(page: &T, e: &Error) -> axum::response::Response {
    super::auth::with_note(
        crate::console::view::render_status(axum::http::StatusCode::BAD_REQUEST, page),
        e,
    )
}

/// The first value of `name`, trimmed, or empty.
pub fn field(f: &Fields, name: &str) -> String {
    text(f, name).unwrap_or_default()
}

/// The problem when it is about `field`, else nothing (templates).
pub fn about<'a>(p: &'a Option<Problem>, field: &str) -> &'a str {
    match p {
        Some(p) if p.names(field) => &p.message,
        _ => "",
    }
}

/// A problem about none of `fields`: shown above the form.
pub fn general<'a>(p: &'a Option<Problem>, fields: &[&str]) -> &'a str {
    match p {
        Some(p) if !fields.iter().any(|f| p.names(f)) => &p.message,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_message_lands_beside_the_field_it_names() {
        let p = |m: &str| Some(Problem::of(&Error::invalid(m)));
        assert_eq!(
            about(&p("'label' must not be empty"), "label"),
            "'label' must not be empty"
        );
        assert_eq!(
            about(&p("label must not be empty"), "label"),
            "label must not be empty"
        );
        assert_eq!(about(&p("labels are short"), "label"), "");
        let vn = p("virtualNetworkId: virtual network 'vn-x' does not exist");
        assert!(!about(&vn, "virtualNetworkId").is_empty());
        assert_eq!(general(&vn, &["virtualNetworkId"]), "");
        let sa = p("'setupActions[1].type': unknown variant");
        assert!(!about(&sa, "setupActions").is_empty());
        let c = Some(Problem::of(&Error::conflict("the instance is busy: retry")));
        assert_eq!(general(&c, &["label"]), "the instance is busy: retry");
    }
}
