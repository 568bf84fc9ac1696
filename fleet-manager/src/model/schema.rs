//! The OpenAPI schemas of the fields whose rules are more than a type: each
//! says in JSON Schema exactly what the check of the same name in
//! [`super`] accepts (same lengths, same characters), so that the document
//! allows nothing the server refuses and refuses nothing it allows. Fields
//! name them with `#[schema(schema_with = ...)]`; the `nullable_` variants
//! also allow `null`, which the server reads as "left out".

use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Array, ArrayBuilder, Object, ObjectBuilder, Type};

/// A character of free text: anything but a control character other than
/// tab, line feed and carriage return ([`super::check_len`]).
const TEXT_CHAR: &str = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]";
/// A character that is neither white space (Rust's `char::is_whitespace`)
/// nor a control character.
const VISIBLE_CHAR: &str =
    r"[^\t-\r \x00-\x1F\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
/// An id ([`super::check_id`]).
pub const ID_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";

/// A string of free text of at most `max` characters, as JSON Schema.
pub fn text_json(max: usize) -> serde_json::Value {
    serde_json::json!({"type": "string", "maxLength": max, "pattern": format!("^{TEXT_CHAR}*$")})
}

/// Like [`text_json`], not all white space.
pub fn nonblank_json(max: usize) -> serde_json::Value {
    serde_json::json!({"type": "string", "maxLength": max,
        "pattern": format!("^{TEXT_CHAR}*{VISIBLE_CHAR}{TEXT_CHAR}*$")})
}

/// Free text that holds `needle`, as JSON Schema.
pub fn text_with_json(max: usize, needle: &str) -> serde_json::Value {
    serde_json::json!({"type": "string", "maxLength": max,
        "pattern": format!("^{TEXT_CHAR}*{needle}{TEXT_CHAR}*$")})
}

/// A URL with one of `schemes` (any case) and something after `://`.
pub fn url_json(max: usize, schemes: &[&str]) -> serde_json::Value {
    let any_case = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let alts: Vec<String> = schemes.iter().map(|s| any_case(s)).collect();
    serde_json::json!({"type": "string", "maxLength": max,
        "pattern": format!("^({})://{TEXT_CHAR}+$", alts.join("|"))})
}

/// A path relative to the data dir with no `..` component, as JSON Schema.
pub fn relative_path_json(max: usize) -> serde_json::Value {
    serde_json::json!({"type": "string", "maxLength": max,
        "pattern": format!(r"^(?!/)(?![\s\S]*(^|/)\.\.(/|$)){TEXT_CHAR}*$")})
}

fn string(nullable: bool) -> ObjectBuilder {
    let t = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new().schema_type(t)
}

fn integer(nullable: bool, min: u64, max: u64) -> Object {
    let t = if nullable {
        SchemaType::from_iter([Type::Integer, Type::Null])
    } else {
        SchemaType::new(Type::Integer)
    };
    ObjectBuilder::new()
        .schema_type(t)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .build()
}

/// Free text of at most `max` characters.
fn text(nullable: bool, max: usize) -> Object {
    string(nullable)
        .max_length(Some(max))
        .pattern(Some(format!("^{TEXT_CHAR}*$")))
        .build()
}

/// A label ([`super::check_label`]): 1 to 256 characters of free text, not
/// all white space.
pub fn label() -> Object {
    string(false)
        .min_length(Some(1))
        .max_length(Some(256))
        .pattern(Some(format!("^{TEXT_CHAR}*{VISIBLE_CHAR}{TEXT_CHAR}*$")))
        .build()
}

/// A list of at most 50 labels.
pub fn nullable_labels() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(label())
        .max_items(Some(50))
        .build()
}

/// A description: free text of at most 4096 characters.
pub fn nullable_description() -> Object {
    text(true, 4096)
}

/// Free text of at most 256 characters.
pub fn nullable_text_256() -> Object {
    text(true, 256)
}

/// Free text of at most 512 characters.
pub fn nullable_text_512() -> Object {
    text(true, 512)
}

/// Free text of at most 1024 characters (a reason given with a snapshot or
/// a backup).
pub fn nullable_reason() -> Object {
    text(true, 1024)
}

/// Free text of at most 2048 characters (a KMS key id or ARN).
pub fn nullable_text_2048() -> Object {
    text(true, 2048)
}

/// An id ([`super::check_id`]).
pub fn id() -> Object {
    string(false).pattern(Some(ID_PATTERN)).build()
}

pub fn nullable_id() -> Object {
    string(true).pattern(Some(ID_PATTERN)).build()
}

/// An AWS region name ([`super::check_region`]).
pub fn nullable_region() -> Object {
    string(true)
        .pattern(Some(r"^[a-z]+(-[a-z]+){0,2}-[0-9]{1,3}$"))
        .build()
}

fn aws_id(prefix: &str) -> Object {
    string(true)
        .pattern(Some(format!("^{prefix}-[A-Za-z0-9]{{1,32}}$")))
        .build()
}

/// `vpc-...` ([`super::check_aws_id`]).
pub fn nullable_vpc_id() -> Object {
    aws_id("vpc")
}
/// `subnet-...`
pub fn nullable_subnet_id() -> Object {
    aws_id("subnet")
}
/// `eipalloc-...`
pub fn nullable_eip_allocation_id() -> Object {
    aws_id("eipalloc")
}
/// `snap-...`
pub fn nullable_snapshot_id() -> Object {
    aws_id("snap")
}
/// At most 5 `sg-...`.
pub fn nullable_security_groups() -> Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            string(false)
                .pattern(Some(r"^sg-[A-Za-z0-9]{1,32}$"))
                .build(),
        )
        .max_items(Some(5))
        .build()
}

/// An IAM role ARN ([`super::check_iam_arn`]).
pub fn nullable_role_arn() -> Object {
    string(true)
        .pattern(Some(r"^arn:aws[^:]*:iam:[^:]*:[0-9]{12}:role/[\s\S]+$"))
        .build()
}

/// An IAM instance profile ARN ([`super::check_iam_arn`]).
pub fn nullable_instance_profile_arn() -> Object {
    string(true)
        .pattern(Some(
            r"^arn:aws[^:]*:iam:[^:]*:[0-9]{12}:instance-profile/[\s\S]+$",
        ))
        .build()
}

/// An AWS access key id ([`super::account::check_access_key_id`]).
pub fn nullable_access_key_id() -> Object {
    string(true)
        .pattern(Some(r"^(AKIA|ASIA)[A-Z0-9]{16}$"))
        .build()
}

/// An AWS secret access key ([`super::account::check_secret_access_key`]).
pub fn nullable_secret_access_key() -> Object {
    string(true)
        .pattern(Some(r"^[!-~]{40}$"))
        .write_only(Some(true))
        .build()
}

/// An EC2 instance type such as `m5.2xlarge`.
pub fn nullable_instance_type() -> Object {
    string(true)
        .max_length(Some(64))
        .pattern(Some(r"^[A-Za-z0-9-]*\.[A-Za-z0-9.-]*$"))
        .build()
}

/// An EBS volume type.
pub fn nullable_volume_type() -> Object {
    let mut values: Vec<serde_json::Value> = super::instance::VOLUME_TYPES
        .iter()
        .map(|v| serde_json::Value::from(*v))
        .collect();
    values.push(serde_json::Value::Null);
    string(true).enum_values(Some(values)).build()
}

/// A size in GiB: 1 to 65536.
pub fn nullable_size_gb() -> Object {
    integer(true, 1, 65536)
}
/// IOPS: 100 to 256000.
pub fn nullable_iops() -> Object {
    integer(true, 100, 256_000)
}
/// Throughput in MiB/s: 125 to 4000.
pub fn nullable_throughput() -> Object {
    integer(true, 125, 4000)
}
/// Any 32-bit unsigned integer.
pub fn nullable_u32() -> Object {
    integer(true, 0, u64::from(u32::MAX))
}
/// Any 32-bit unsigned integer, not null.
pub fn u32() -> Object {
    integer(false, 0, u64::from(u32::MAX))
}
/// Hours between two backups: 1 to 8784.
pub fn period_hours() -> Object {
    integer(false, 1, 8784)
}

/// A PEM certificate (chain): empty, or free text of at most 65536
/// characters holding a `BEGIN CERTIFICATE` line.
pub fn nullable_pem() -> Object {
    string(true)
        .max_length(Some(65536))
        .pattern(Some(format!(
            "^({TEXT_CHAR}*-----BEGIN CERTIFICATE-----{TEXT_CHAR}*)?$"
        )))
        .build()
}

/// A license: a JSON object in a string, at most 65536 characters of
/// free text ([`super::tenant::check_license_json`]). JSON Schema can't
/// say "parses as JSON"; the document says it in words.
pub fn nullable_license() -> Object {
    string(true)
        .max_length(Some(1 << 16))
        .pattern(Some(format!(r"^[\t\n\r ]*\{{{TEXT_CHAR}*\}}[\t\n\r ]*$")))
        .description(Some("a JSON object, as a string"))
        .build()
}

/// Cloud tags ([`super::check_cloud_tags`]): at most 50, keys of 1 to 128
/// characters not starting with `aws:` (in any case), values of at most
/// 256 characters.
pub fn cloud_tags(nullable: bool) -> Object {
    let t = if nullable {
        SchemaType::from_iter([Type::Object, Type::Null])
    } else {
        SchemaType::new(Type::Object)
    };
    ObjectBuilder::new()
        .schema_type(t)
        .max_properties(Some(50))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some(r"^(?![aA][wW][sS]:)"))
                .build(),
        ))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(256))
                .build()
                .into(),
        )))
        .build()
}

pub fn nullable_cloud_tags() -> Object {
    cloud_tags(true)
}

pub fn tags() -> Object {
    cloud_tags(false)
}

/// A backup exclusion: a path relative to the data dir without empty,
/// `.` or `..` components, at most 512 characters.
pub fn exclusions() -> Array {
    ArrayBuilder::new()
        .schema_type(Type::Array)
        .items(
            string(false)
                .min_length(Some(1))
                .max_length(Some(512))
                .pattern(Some(
                    r"^(?!\.\.?(/|$))[^/\x00]+(/(?!\.\.?(/|$))[^/\x00]+)*$",
                ))
                .build(),
        )
        .max_items(Some(100))
        .build()
}

/// Free text of at most 255 characters (a rollout's label).
pub fn text_255() -> Object {
    text(false, 255)
}

/// At most 50 labels (the FM tags a rollout's selector asks for).
pub fn labels() -> Array {
    ArrayBuilder::new()
        .schema_type(Type::Array)
        .items(label())
        .max_items(Some(50))
        .build()
}

/// At most 10,000 ids (the instances a rollout's selector names).
pub fn ids_10000() -> Array {
    ArrayBuilder::new()
        .schema_type(Type::Array)
        .items(id())
        .max_items(Some(10_000))
        .build()
}

/// Seconds of a rollout's health watch: 0 to 3600.
pub fn health_seconds() -> Object {
    integer(false, 0, 3600)
}

/// Seconds a rollout's health watch may last: 0 to 86400 (and at least
/// `healthSeconds`, which JSON Schema can't say).
pub fn health_timeout_seconds() -> Object {
    integer(false, 0, 86_400)
}

/// A share in percent: 0 to 100.
pub fn percent() -> Object {
    integer(false, 0, 100)
}

/// A rollout's limit ([`super::rollout::Limit`]): a count of targets, or a
/// share of them (`"25%"`), written without spaces or leading zeros; at
/// least 1 (or 1%) for `maxInFlight`.
fn limit(min: u32) -> utoipa::openapi::schema::Schema {
    let pattern = if min == 0 {
        r"^(0|[1-9][0-9]{0,8}|(100|[1-9]?[0-9])%)$"
    } else {
        r"^([1-9][0-9]{0,8}|(100|[1-9][0-9]?)%)$"
    };
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(integer(false, u64::from(min), u64::from(u32::MAX)))
        .item(string(false).pattern(Some(pattern)).build())
        .description(Some(
            "a count of targets, or a share of them such as \"25%\"",
        ))
        .build()
        .into()
}

pub fn limit_from_0() -> utoipa::openapi::schema::Schema {
    limit(0)
}

pub fn limit_from_1() -> utoipa::openapi::schema::Schema {
    limit(1)
}
