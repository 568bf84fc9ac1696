//! The agent protocol (`proto/fm/agent/v1/agent.proto`) and the public gRPC
//! API (`proto/fm/fleet/v1/fleet.proto`): generated messages, servers and
//! clients.

#[allow(clippy::all, missing_docs)]
pub mod agent {
    tonic::include_proto!("fm.agent.v1");
}

#[allow(clippy::all, missing_docs)]
pub mod fleet {
    tonic::include_proto!("fm.fleet.v1");

    /// The public API's encoded descriptor set (for reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/fleet_descriptor.bin"));
}

/// JSON of the well-known types the resources carry.
pub mod json {
    use prost_types::value::Kind;
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};

    struct Value<'a>(&'a prost_types::Value);

    impl serde::Serialize for Value<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match &self.0.kind {
                None | Some(Kind::NullValue(_)) => s.serialize_unit(),
                Some(Kind::BoolValue(b)) => s.serialize_bool(*b),
                // Whole numbers print as integers, as the REST API has them.
                Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                    s.serialize_i64(*n as i64)
                }
                Some(Kind::NumberValue(n)) => s.serialize_f64(*n),
                Some(Kind::StringValue(v)) => s.serialize_str(v),
                Some(Kind::ListValue(l)) => {
                    let mut seq = s.serialize_seq(Some(l.values.len()))?;
                    for v in &l.values {
                        seq.serialize_element(&Value(v))?;
                    }
                    seq.end()
                }
                Some(Kind::StructValue(m)) => object(m, s),
            }
        }
    }

    fn object<S: Serializer>(m: &prost_types::Struct, s: S) -> Result<S::Ok, S::Error> {
        // In name order, so the same resource prints the same.
        let mut keys: Vec<&String> = m.fields.keys().collect();
        keys.sort();
        let mut map = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            map.serialize_entry(k, &Value(&m.fields[k]))?;
        }
        map.end()
    }

    /// A resource's `settings`: a plain JSON object (empty when unset).
    pub fn settings<S: Serializer>(
        v: &Option<prost_types::Struct>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => object(m, s),
            None => s.serialize_map(Some(0))?.end(),
        }
    }
}
