//! FM's ownership tags, the filters that find by them, and `ClientToken`s.
//!
//! Invariants: everything FM makes carries `fleet-manager:owner` (this FM),
//! `fleet-manager:tenant`, `fleet-manager:instance` and the tag of its
//! logical id (`fleet-manager:vm`, `:volume`, `:snapshot`, `:network`);
//! the user's tags come along except those in FM's (`fleet-manager:`) and
//! AWS's (`aws:`) namespaces, which only FM and AWS set. A `ClientToken`
//! depends only on what is made and its logical id, so every attempt of a
//! step sends the same one.

use super::AwsCloud;
use crate::cloud::Placement;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

pub const TAG_OWNER: &str = "fleet-manager:owner";
pub const TAG_TENANT: &str = "fleet-manager:tenant";
pub const TAG_INSTANCE: &str = "fleet-manager:instance";
pub const TAG_VM: &str = "fleet-manager:vm";
pub const TAG_VOLUME: &str = "fleet-manager:volume";
pub const TAG_SNAPSHOT: &str = "fleet-manager:snapshot";
pub const TAG_NETWORK: &str = "fleet-manager:network";

/// How many hex digits of the hash a `ClientToken` keeps (EC2 takes 64
/// characters at most; `fm-` and 48 digits make 51).
const CLIENT_TOKEN_HEX_DIGITS: usize = 48;

pub(super) fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

pub(super) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub(super) fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), value)
}

/// The value of tag `k`, if there is one.
pub(super) fn tag_value(tags: &[Tag], k: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(k))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// A `ClientToken` for creating `what` named `id`: the same for every
/// attempt of the step that chose `id`, at most 64 ASCII characters.
pub(super) fn client_token(what: &str, id: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{what}:{id}").as_bytes());
    format!("fm-{}", &hex::encode(h)[..CLIENT_TOKEN_HEX_DIGITS])
}

impl AwsCloud {
    /// The tags of a resource of `at`'s instance whose logical id is
    /// `kind` (tag key, value).
    pub(super) fn tags(&self, at: &Placement, kind: (&str, &str)) -> Vec<Tag> {
        let mut t: Vec<Tag> = at
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("fleet-manager:") && !k.starts_with("aws:"))
            .map(|(k, v)| tag(k, v))
            .collect();
        if !at.tags.contains_key("Name") && !at.label.is_empty() {
            t.push(tag("Name", &at.label));
        }
        t.push(tag(TAG_OWNER, &self.settings.owner));
        t.push(tag(TAG_TENANT, &at.tenant_id));
        t.push(tag(TAG_INSTANCE, &at.instance_id));
        // EC2 refuses a key twice.
        if kind.0 != TAG_INSTANCE {
            t.push(tag(kind.0, kind.1));
        }
        t
    }

    pub(super) fn tag_spec(
        &self,
        at: &Placement,
        rt: ResourceType,
        kind: (&str, &str),
    ) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(self.tags(at, kind)))
            .build()
    }

    /// Matches what this FM owns.
    pub(super) fn owner_filter(&self) -> Filter {
        tag_filter(TAG_OWNER, &self.settings.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_resource_and_within_ec2_limits() {
        let a = client_token("vm", "vm-0123");
        assert_eq!(a, client_token("vm", "vm-0123"));
        assert_ne!(a, client_token("vm", "vm-0124"));
        assert_ne!(a, client_token("volume", "vm-0123"));
        assert!(a.len() <= 64 && a.is_ascii());
    }
}
