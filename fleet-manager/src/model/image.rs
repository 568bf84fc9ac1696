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
