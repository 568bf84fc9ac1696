//! Rollouts: one action over a selection of instances, a few at a time,
//! canaries first, stopped when too many fail (an extension beside the
//! public API; BOSH's `update` block and SSM's MaxConcurrency / MaxErrors).

use super::instance::NodeType;
use super::{check_id, check_label, check_len};
use crate::error::{Error, Result};
use crate::store::entities::{rollout, rollout_target};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// The most instances one rollout takes.
pub const MAX_TARGETS: usize = 10_000;

/// What a rollout does to each target. Every variant has braces, so that
/// `deny_unknown_fields` refuses fields it does not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum RolloutAction {
    /// A new VM for each target, its data disk kept.
    #[serde(rename_all = "camelCase")]
    Reprovision {
        #[serde(default)]
        allow_downgrade: bool,
    },
    /// Each target moved to `imageId`, then reprovisioned.
    #[serde(rename_all = "camelCase")]
    Upgrade {
        #[schema(schema_with = super::schema::id)]
        image_id: String,
        #[serde(default)]
        allow_downgrade: bool,
    },
    RestartNode {},
    ReplaySetupActions {},
    /// A snapshot of each target's data volume.
    Snapshot {},
    /// A backup of each target's node.
    Backup {},
    Stop {},
    Start {},
}

impl RolloutAction {
    pub fn name(&self) -> &'static str {
        match self {
            RolloutAction::Reprovision { .. } => "REPROVISION",
            RolloutAction::Upgrade { .. } => "UPGRADE",
            RolloutAction::RestartNode {} => "RESTART_NODE",
            RolloutAction::ReplaySetupActions {} => "REPLAY_SETUP_ACTIONS",
            RolloutAction::Snapshot {} => "SNAPSHOT",
            RolloutAction::Backup {} => "BACKUP",
            RolloutAction::Stop {} => "STOP",
            RolloutAction::Start {} => "START",
        }
    }

    /// What a target's node should be once the action is done: running and
    /// healthy, except after a stop.
    pub fn leaves_node_running(&self) -> bool {
        !matches!(self, RolloutAction::Stop {})
    }

    /// Whether targets must be up before the action (the meltdown guard
    /// counts those that are not); a start takes stopped ones.
    pub fn needs_healthy_targets(&self) -> bool {
        !matches!(self, RolloutAction::Start {})
    }
}

/// Which instances a rollout takes: every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// These instances (in this order, before the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = super::schema::ids_10000)]
    pub instance_ids: Vec<String>,
    /// Instances carrying every one of these FM tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = super::schema::labels)]
    pub fm_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_id)]
    pub instance_settings_template_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_id)]
    pub virtual_network_id: Option<String>,
    /// Instances on this image now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::nullable_id)]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dss_node_type: Option<NodeType>,
    /// Every instance of the tenant; required when no other criterion is
    /// given, so an empty selector never means the whole fleet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Selector {
    fn is_empty(&self) -> bool {
        self.instance_ids.is_empty()
            && self.fm_tags.is_empty()
            && self.instance_settings_template_id.is_none()
            && self.virtual_network_id.is_none()
            && self.image_id.is_none()
            && self.dss_node_type.is_none()
    }

    /// Whether an instance with these fields is selected (`instance_ids`
    /// are checked by the caller).
    pub fn matches(
        &self,
        template_id: &str,
        network_id: &str,
        image_id: &str,
        node_type: NodeType,
        fm_tags: &[String],
    ) -> bool {
        self.instance_settings_template_id
            .as_deref()
            .is_none_or(|t| t == template_id)
            && self
                .virtual_network_id
                .as_deref()
                .is_none_or(|n| n == network_id)
            && self.image_id.as_deref().is_none_or(|i| i == image_id)
            && self.dss_node_type.is_none_or(|t| t == node_type)
            && self.fm_tags.iter().all(|t| fm_tags.contains(t))
    }
}

/// A count of targets, or a share of them (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u32),
    Percent(u32),
}

impl Limit {
    /// The limit for `targets` targets: a share rounded down.
    pub fn of(self, targets: usize) -> usize {
        match self {
            Limit::Count(n) => n as usize,
            Limit::Percent(p) => targets * p as usize / 100,
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Limit::Count(n) => s.serialize_u32(*n),
            Limit::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

impl Limit {
    /// Reads `"5"` or `"25%"`, exactly as the schema's pattern writes them.
    fn parse(t: &str) -> Option<Limit> {
        fn digits(s: &str, most: usize) -> bool {
            !s.is_empty()
                && s.len() <= most
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        }
        match t.strip_suffix('%') {
            Some(p) if digits(p, 3) => p.parse().ok().filter(|p| *p <= 100).map(Limit::Percent),
            Some(_) => None,
            None if digits(t, 9) => t.parse().ok().map(Limit::Count),
            None => None,
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "expected a count (5) or a percentage from 0% to 100% (\"25%\")",
            )
        };
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::Count(n) => Ok(Limit::Count(n)),
            Raw::Text(t) => Limit::parse(&t).ok_or_else(bad),
        }
    }
}

pub(crate) fn one() -> Limit {
    Limit::Count(1)
}
pub(crate) fn zero() -> Limit {
    Limit::Count(0)
}
pub(crate) fn health_seconds() -> u32 {
    10
}
pub(crate) fn health_timeout_seconds() -> u32 {
    600
}
pub(crate) fn meltdown_percent() -> u32 {
    50
}

/// What a rollout is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    #[serde(default)]
    #[schema(schema_with = super::schema::text_255)]
    pub label: String,
    pub selector: Selector,
    pub action: RolloutAction,
    /// Targets done first, before any other starts; a canary that fails
    /// stops the rollout.
    #[serde(default)]
    #[schema(schema_with = super::schema::u32)]
    pub canaries: u32,
    /// At most this many targets at once (default 1).
    #[serde(default = "one")]
    #[schema(schema_with = super::schema::limit_from_1)]
    pub max_in_flight: Limit,
    /// The rollout stops starting targets once more than this many have
    /// failed (default 0: the first failure stops it).
    #[serde(default = "zero")]
    #[schema(schema_with = super::schema::limit_from_0)]
    pub max_errors: Limit,
    /// After its operation, a target counts as done once its node has been
    /// healthy (agent connected, node running) this long without a break;
    /// 0 skips the watch.
    #[serde(default = "health_seconds")]
    #[schema(schema_with = super::schema::health_seconds)]
    pub health_seconds: u32,
    /// A target whose node is not healthy for `healthSeconds` within this
    /// long after its operation fails.
    #[serde(default = "health_timeout_seconds")]
    #[schema(schema_with = super::schema::health_timeout_seconds)]
    pub health_timeout_seconds: u32,
    /// Nothing starts when more than this share of the selected instances
    /// is unhealthy beforehand (the meltdown guard; 100 turns it off).
    #[serde(default = "meltdown_percent")]
    #[schema(schema_with = super::schema::percent)]
    pub meltdown_percent: u32,
}

impl RolloutSpec {
    pub fn validate(&self) -> Result<()> {
        check_len("label", &self.label, 255)?;
        if self.selector.is_empty() && !self.selector.all {
            return Err(Error::invalid(
                "selector: give instanceIds, fmTags, instanceSettingsTemplateId, virtualNetworkId, imageId or dssNodeType, or all=true for every instance",
            ));
        }
        if self.selector.instance_ids.len() > MAX_TARGETS {
            return Err(Error::invalid(format!(
                "selector.instanceIds: at most {MAX_TARGETS} instances"
            )));
        }
        for id in &self.selector.instance_ids {
            check_id("selector.instanceIds", id)?;
        }
        if self.selector.fm_tags.len() > 50 {
            return Err(Error::invalid("selector.fmTags: at most 50 tags"));
        }
        for t in &self.selector.fm_tags {
            check_label("selector.fmTags", t)?;
        }
        for (field, id) in [
            (
                "selector.instanceSettingsTemplateId",
                &self.selector.instance_settings_template_id,
            ),
            (
                "selector.virtualNetworkId",
                &self.selector.virtual_network_id,
            ),
            ("selector.imageId", &self.selector.image_id),
        ] {
            if let Some(id) = id {
                check_id(field, id)?;
            }
        }
        if let RolloutAction::Upgrade { image_id, .. } = &self.action {
            check_id("action.imageId", image_id)?;
        }
        if matches!(self.max_in_flight, Limit::Count(0) | Limit::Percent(0)) {
            return Err(Error::invalid(
                "maxInFlight must be at least 1 (or a share above 0%)",
            ));
        }
        if self.health_seconds > 3600 {
            return Err(Error::invalid("healthSeconds must be at most 3600"));
        }
        if self.health_timeout_seconds < self.health_seconds || self.health_timeout_seconds > 86_400
        {
            return Err(Error::invalid(
                "healthTimeoutSeconds must be at least healthSeconds and at most 86400",
            ));
        }
        if self.meltdown_percent > 100 {
            return Err(Error::invalid("meltdownPercent must be from 0 to 100"));
        }
        Ok(())
    }

    /// How many targets may be in flight at once, of `targets`.
    pub fn in_flight_of(&self, targets: usize) -> usize {
        self.max_in_flight.of(targets).max(1)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Starting targets as limits allow.
    Running,
    /// Starting nothing new; what runs goes on.
    Paused,
    /// Cancel asked: nothing new starts, the rest is skipped, and it ends
    /// once what runs has finished.
    Cancelling,
    /// A canary failed, the error budget is spent or the guard tripped:
    /// nothing new starts, and it fails once what runs has finished.
    Failing,
    Done,
    Failed,
    Cancelled,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Cancelling => "cancelling",
            RolloutState::Failing => "failing",
            RolloutState::Done => "done",
            RolloutState::Failed => "failed",
            RolloutState::Cancelled => "cancelled",
        }
    }

    /// The state stored as `s`; unknown text reads as failed (never
    /// written by this version).
    pub fn parse(s: &str) -> RolloutState {
        match s {
            "running" => RolloutState::Running,
            "paused" => RolloutState::Paused,
            "cancelling" => RolloutState::Cancelling,
            "failing" => RolloutState::Failing,
            "done" => RolloutState::Done,
            "cancelled" => RolloutState::Cancelled,
            _ => RolloutState::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutState::Done | RolloutState::Failed | RolloutState::Cancelled
        )
    }

    /// The states a reconciler pass moves on.
    pub const ACTIVE: [RolloutState; 4] = [
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::Cancelling,
        RolloutState::Failing,
    ];
}

/// Where one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    Pending,
    /// Its operation is being started (its id is chosen and recorded
    /// first, so a crash here never starts a second one).
    Starting,
    /// Its operation runs.
    Running,
    /// Its operation is done; its node's health is being watched.
    Watching,
    Done,
    Failed,
    /// Never started: the rollout stopped or was cancelled first.
    Skipped,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Starting => "starting",
            TargetState::Running => "running",
            TargetState::Watching => "watching",
            TargetState::Done => "done",
            TargetState::Failed => "failed",
            TargetState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> TargetState {
        match s {
            "pending" => TargetState::Pending,
            "starting" => TargetState::Starting,
            "running" => TargetState::Running,
            "watching" => TargetState::Watching,
            "done" => TargetState::Done,
            "skipped" => TargetState::Skipped,
            _ => TargetState::Failed,
        }
    }

    /// Started and not finished: what `maxInFlight` bounds.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            TargetState::Starting | TargetState::Running | TargetState::Watching
        )
    }
}

/// The targets of a rollout by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCounts {
    pub targets: usize,
    pub pending: usize,
    /// Started and not finished (operation running or health watched).
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl RolloutCounts {
    pub fn of<'a>(states: impl IntoIterator<Item = &'a TargetState>) -> RolloutCounts {
        let mut c = RolloutCounts::default();
        for s in states {
            c.targets += 1;
            match s {
                TargetState::Pending => c.pending += 1,
                TargetState::Starting | TargetState::Running | TargetState::Watching => {
                    c.running += 1
                }
                TargetState::Done => c.done += 1,
                TargetState::Failed => c.failed += 1,
                TargetState::Skipped => c.skipped += 1,
            }
        }
        c
    }
}

/// One target of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    pub instance_id: String,
    pub canary: bool,
    pub state: TargetState,
    /// The operation (future) FM started for it.
    #[schema(required)]
    pub operation_id: Option<String>,
    #[schema(required)]
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    #[schema(required)]
    pub started_at: Option<i64>,
    #[schema(required)]
    pub finished_at: Option<i64>,
}

impl RolloutTarget {
    pub fn from_row(t: &rollout_target::Model) -> RolloutTarget {
        RolloutTarget {
            instance_id: t.instance_id.clone(),
            canary: t.canary,
            state: TargetState::parse(&t.state),
            operation_id: t.operation_id.clone(),
            error: t.error.clone(),
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

/// A rollout as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub id: String,
    pub label: String,
    pub state: RolloutState,
    /// Why it stopped short, if it did.
    #[schema(required)]
    pub reason: Option<String>,
    pub spec: RolloutSpec,
    pub counts: RolloutCounts,
    /// Every target in the order they go (only when one rollout is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<RolloutTarget>>,
    #[schema(required)]
    pub initiated_by: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    #[schema(required)]
    pub finished_at: Option<i64>,
}

impl Rollout {
    /// The view of a stored rollout with every target.
    pub fn from_rows(r: &rollout::Model, targets: &[rollout_target::Model]) -> Result<Rollout> {
        let states: Vec<TargetState> = targets
            .iter()
            .map(|t| TargetState::parse(&t.state))
            .collect();
        let mut view = Rollout::summary(r, &states)?;
        view.targets = Some(targets.iter().map(RolloutTarget::from_row).collect());
        Ok(view)
    }

    /// The view of a stored rollout with its counts only, from its
    /// targets' states (a list).
    pub fn summary(r: &rollout::Model, states: &[TargetState]) -> Result<Rollout> {
        let spec: RolloutSpec = serde_json::from_str(&r.spec).map_err(|e| {
            Error::internal(format!("rollout {} has a spec FM can't read: {e}", r.id))
        })?;
        Ok(Rollout {
            id: r.id.clone(),
            label: r.label.clone(),
            state: RolloutState::parse(&r.state),
            reason: r.reason.clone(),
            spec,
            counts: RolloutCounts::of(states),
            targets: None,
            initiated_by: r.initiated_by.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<RolloutSpec> {
        let s: RolloutSpec =
            serde_json::from_value(v).map_err(|e| Error::invalid(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn limits_read_as_counts_or_shares_and_write_back_the_same() {
        for (v, want) in [
            (json!(5), Limit::Count(5)),
            (json!("5"), Limit::Count(5)),
            (json!("25%"), Limit::Percent(25)),
            (json!("100%"), Limit::Percent(100)),
            (json!("0"), Limit::Count(0)),
        ] {
            let l: Limit = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(l, want, "{v}");
        }
        assert_eq!(
            serde_json::to_value(Limit::Percent(25)).unwrap(),
            json!("25%")
        );
        assert_eq!(serde_json::to_value(Limit::Count(3)).unwrap(), json!(3));
        for bad in [
            json!("101%"),
            json!("-1"),
            json!("x%"),
            json!(-2),
            json!(1.5),
            json!(" 5"),
            json!("05"),
            json!("5 %"),
            json!("%"),
            json!(""),
        ] {
            assert!(
                serde_json::from_value::<Limit>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(Limit::Percent(25).of(20), 5);
        assert_eq!(Limit::Percent(10).of(5), 0);
    }

    #[test]
    fn a_spec_takes_defaults_and_refuses_what_would_surprise() {
        let s =
            spec(json!({"selector": {"all": true}, "action": {"type": "RESTART_NODE"}})).unwrap();
        assert_eq!(s.max_in_flight, Limit::Count(1));
        assert_eq!(s.max_errors, Limit::Count(0));
        assert_eq!(s.canaries, 0);
        assert_eq!(s.health_seconds, 10);
        assert_eq!(s.in_flight_of(1), 1);
        let s = spec(json!({"selector": {"fmTags": ["a"]}, "action": {"type": "UPGRADE", "imageId": "img-1"}, "maxInFlight": "25%"})).unwrap();
        assert_eq!(s.in_flight_of(20), 5);
        assert_eq!(s.in_flight_of(2), 1, "a share never rounds to none");

        let e = spec(json!({"selector": {}, "action": {"type": "STOP"}})).unwrap_err();
        assert!(e.to_string().contains("all=true"), "{e}");
        let e =
            spec(json!({"selector": {"all": true}, "action": {"type": "STOP"}, "maxInFlight": 0}))
                .unwrap_err();
        assert!(e.to_string().contains("maxInFlight"), "{e}");
        let e =
            spec(json!({"selector": {"all": true}, "action": {"type": "UPGRADE"}})).unwrap_err();
        assert!(e.to_string().contains("imageId"), "{e}");
        let e = spec(json!({"selector": {"all": true}, "action": {"type": "REBOOT"}})).unwrap_err();
        assert!(e.to_string().contains("REBOOT"), "{e}");
        let e =
            spec(json!({"selector": {"all": true}, "action": {"type": "STOP"}, "maxInFligth": 2}))
                .unwrap_err();
        assert!(e.to_string().contains("maxInFligth"), "{e}");
        let e = spec(json!({"selector": {"instanceIds": ["../x"]}, "action": {"type": "STOP"}}))
            .unwrap_err();
        assert!(e.to_string().contains("selector.instanceIds"), "{e}");
        let e = spec(json!({"selector": {"all": true}, "action": {"type": "STOP"}, "healthSeconds": 20, "healthTimeoutSeconds": 10})).unwrap_err();
        assert!(e.to_string().contains("healthTimeoutSeconds"), "{e}");
    }

    #[test]
    fn a_selector_needs_every_criterion_it_gives() {
        let s = Selector {
            fm_tags: vec!["eu".into(), "prod".into()],
            image_id: Some("img-2".into()),
            ..Default::default()
        };
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(s.matches(
            "t",
            "n",
            "img-2",
            NodeType::Design,
            &tags(&["prod", "eu", "x"])
        ));
        assert!(!s.matches("t", "n", "img-2", NodeType::Design, &tags(&["prod"])));
        assert!(!s.matches("t", "n", "img-1", NodeType::Design, &tags(&["prod", "eu"])));
    }

    #[test]
    fn counts_add_up_by_state() {
        let c = RolloutCounts::of(&[
            TargetState::Pending,
            TargetState::Starting,
            TargetState::Watching,
            TargetState::Done,
            TargetState::Failed,
            TargetState::Skipped,
        ]);
        assert_eq!(
            c,
            RolloutCounts {
                targets: 6,
                pending: 1,
                running: 2,
                done: 1,
                failed: 1,
                skipped: 1
            }
        );
    }
}
