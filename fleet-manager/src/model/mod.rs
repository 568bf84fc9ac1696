//! Domain types: the objects FM keeps, in the JSON shape of the public API
//! (field names exactly as the `dataikuapi.fmclient` Python client sends and
//! reads them), and the rules each must satisfy.
//!
//! Every input type has a `validate` method; the application layer calls it
//! once, for every surface.

pub mod account;
pub mod backup;
pub mod fleet;
pub mod image;
pub mod instance;
pub mod lifecycle;
pub mod network;
pub mod operation;
pub mod rollout;
pub mod schema;
pub mod setup_action;
pub mod snapshot;
pub mod state;
pub mod template;
pub mod tenant;
pub mod user;

use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Deserializer};

/// Deserializes `null` as the type's default, so a client that sends
/// `"fmTags": null` means the same as one that leaves the field out.
pub fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// For `skip_serializing_if` on write-only fields (secrets): never
/// written out, yet documented as a field a request may carry.
pub fn write_only<T>(_: &T) -> bool {
    true
}

/// A new random id with a readable prefix, e.g. `inst-5k2m9x0qa3b7`.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..12)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Checks an id taken from a path or a body: 1 to 64 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot. Anything else (slashes, `..`,
/// control characters) is refused before it reaches the store.
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {kind} id '{}': ids are 1 to 64 characters of letters, digits, '.', '_' and '-'",
            id.escape_debug()
        )))
    }
}

/// A label: required, trimmed non-empty, at most 256 characters.
pub fn check_label(field: &str, label: &str) -> Result<()> {
    if label.trim().is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    check_len(field, label, 256)
}

pub fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Error::invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// `value` must be `prefix` followed by 1 or more lowercase hex digits or
/// letters (AWS resource ids such as `vpc-0abc`, `subnet-12`, `sg-9f`).
pub fn check_aws_id(field: &str, value: &str, prefix: &str) -> Result<()> {
    let rest = value.strip_prefix(prefix).and_then(|r| r.strip_prefix('-'));
    match rest {
        Some(r)
            if !r.is_empty() && r.len() <= 32 && r.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "{field} '{}' is not a valid id (expected '{prefix}-' followed by letters and digits)",
            value.escape_debug()
        ))),
    }
}

/// An IAM ARN of the given resource type (`role`, `instance-profile`).
pub fn check_iam_arn(field: &str, value: &str, resource: &str) -> Result<()> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix(resource)
            .is_some_and(|r| r.starts_with('/') && r.len() > 1);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} '{}' is not an IAM {resource} ARN (arn:aws:iam::ACCOUNT:{resource}/NAME)",
            value.escape_debug()
        )))
    }
}

/// An AWS region name such as `eu-west-3` or `us-gov-west-1`.
pub fn check_region(field: &str, value: &str) -> Result<()> {
    let parts: Vec<&str> = value.split('-').collect();
    let ok = (2..=4).contains(&parts.len())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=3).contains(&parts[parts.len() - 1].len())
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} '{}' is not an AWS region name (e.g. 'eu-west-3')",
            value.escape_debug()
        )))
    }
}

/// Cloud tags as AWS accepts them: at most 50, keys 1..=128 characters not
/// starting with `aws:`, values at most 256 characters.
pub fn check_cloud_tags(
    field: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    if tags.len() > 50 {
        return Err(Error::invalid(format!(
            "{field}: at most 50 tags are allowed"
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Error::invalid(format!(
                "{field}: tag keys must be 1 to 128 characters"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid(format!(
                "{field}: tag key '{k}' uses the reserved prefix 'aws:'"
            )));
        }
        if v.chars().count() > 256 {
            return Err(Error::invalid(format!(
                "{field}: the value of tag '{k}' is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_path_characters_are_refused() {
        for bad in [
            "",
            "../etc",
            "a/b",
            ".hidden",
            "a b",
            "a\u{0}b",
            &"x".repeat(65),
        ] {
            assert!(
                check_id("instance", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        for good in ["inst-abc123", "main", "A_b.c-9"] {
            assert!(
                check_id("instance", good).is_ok(),
                "{good:?} should be accepted"
            );
        }
    }

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let a = new_id("inst");
        let b = new_id("inst");
        assert_ne!(a, b);
        check_id("instance", &a).unwrap();
        assert!(a.starts_with("inst-"));
    }

    #[test]
    fn aws_ids_regions_and_arns_are_checked() {
        assert!(check_aws_id("awsVpcId", "vpc-0a1b2c", "vpc").is_ok());
        assert!(check_aws_id("awsVpcId", "subnet-0a1b2c", "vpc").is_err());
        assert!(check_aws_id("awsVpcId", "vpc-", "vpc").is_err());
        assert!(check_region("awsRegion", "eu-west-3").is_ok());
        assert!(check_region("awsRegion", "us-gov-west-1").is_ok());
        assert!(check_region("awsRegion", "Europe").is_err());
        assert!(check_iam_arn("x", "arn:aws:iam::123456789012:role/fm", "role").is_ok());
        assert!(check_iam_arn("x", "arn:aws:iam::123:role/fm", "role").is_err());
        assert!(check_iam_arn("x", "arn:aws:iam::123456789012:user/fm", "role").is_err());
    }

    #[test]
    fn reserved_and_oversized_tags_are_refused() {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("aws:foo".to_string(), "x".to_string());
        assert!(check_cloud_tags("cloudTags", &tags).is_err());
        tags.clear();
        tags.insert("team".to_string(), "x".repeat(257));
        assert!(check_cloud_tags("cloudTags", &tags).is_err());
        tags.insert("team".to_string(), "data".to_string());
        assert!(check_cloud_tags("cloudTags", &tags).is_ok());
    }
}
