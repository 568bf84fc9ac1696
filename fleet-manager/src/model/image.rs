//! The image catalog: the node versions FM can deploy.

use serde::Serialize;
use utoipa::ToSchema;

/// One deployable node version, as `GET /images` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: String,
    pub label: String,
    /// The node software version this image installs, e.g. `13.5.4`.
    pub node_version: String,
}

/// The images present after the first start. Ids follow the public
/// convention `dss-VERSION-default`; at least two versions exist so that
/// upgrades can be exercised.
pub fn seed_catalog() -> Vec<Image> {
    ["13.5.4", "14.2.0"]
        .into_iter()
        .map(|v| Image {
            id: format!("dss-{v}-default"),
            label: format!("Stand-in node {v} (test kit, not Dataiku DSS)"),
            node_version: v.to_string(),
        })
        .collect()
}

/// Dotted versions compared number by number; missing parts count as 0
/// (`14.2` is `14.2.0`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (mut x, mut y) = (parse(a), parse(b));
    let n = x.len().max(y.len());
    x.resize(n, 0);
    y.resize(n, 0);
    x.cmp(&y)
}

/// A backup taken on node version `backup_version` restores onto a node of
/// `target_version` only if it is not newer (an older one is upgraded by
/// the kit); the error says what to do instead.
pub fn check_restorable_version(
    backup_id: &str,
    backup_version: &str,
    target_version: &str,
) -> std::result::Result<(), String> {
    if version_cmp(backup_version, target_version).is_gt() {
        return Err(format!(
            "backup {backup_id} was taken on node version {backup_version}, newer than this instance's image ({target_version}): restoring it would downgrade the node. Use an image of version {backup_version} or later"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_number_by_number_with_missing_parts_as_zero() {
        assert_eq!(version_cmp("14.2", "14.2.0"), Ordering::Equal);
        assert_eq!(version_cmp("13.10.0", "13.9.9"), Ordering::Greater);
        assert_eq!(version_cmp("13.5.4", "14.2.0"), Ordering::Less);
    }

    #[test]
    fn a_backup_newer_than_the_target_is_refused_with_the_version_to_use() {
        assert!(check_restorable_version("bk-1", "13.5.4", "14.2.0").is_ok());
        assert!(check_restorable_version("bk-1", "14.2.0", "14.2.0").is_ok());
        let e = check_restorable_version("bk-1", "14.2.0", "13.5.4").unwrap_err();
        assert!(e.contains("14.2.0 or later"), "{e}");
    }
}
