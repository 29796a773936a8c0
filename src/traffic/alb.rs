//! Application Load Balancer weights: one ModifyRule/ModifyListener per weight change, one read back.
//!
//! The weights live in one forward action: on a listener rule (`traffic.alb.ruleArn`) or in a
//! listener's default actions (`traffic.alb.listenerArn`). That action must hold exactly the
//! rollout's two target groups (the canary one at weight 0 before the first rollout); a rewrite
//! changes only their weights and keeps everything else of the rule as it was read: conditions,
//! other actions and their order, the stickiness config. An action that does not hold the
//! rollout's target groups is reported and never rewritten.
//!
//! ELBv2 has no conditional write, so a rewrite is read-modify-write: the router writes from the
//! actions it read last, if that read is at most [`AlbRouter::snapshot_max_age`] old (the
//! controller observes before it acts, so a weight change costs one write and one read back),
//! and reads afresh otherwise.
//!
//! Throttling and 5xx answers are retried by the SDK's standard retry with backoff, as the
//! shared `SdkConfig` says (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`); what fails on every attempt
//! is returned as a [`RouterError`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HttpHeaderConditionConfig, Rule, RuleCondition, TargetGroupTuple, TargetHealthStateEnum,
};

use super::{AwsFailure, FailureKind};

mod pairs;
mod sweep;
use crate::api::{AlbTraffic, HeaderMatch, SetHeaderRoute};
use crate::engine::{TargetGroups, TrafficObservation};
use crate::ports::{Effect, PortError, TrafficRouter};
pub use pairs::PairRule;
pub use sweep::Sweep;

/// Why the router did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("canary weight {0} is out of range: it is a percentage from 0 to 100")]
    WeightOutOfRange(i32),
    #[error("the stable and canary target groups are the same ({0}): a weight split needs two different target groups")]
    SameTargetGroup(String),
    #[error("{field} {value:?} is not {expected}")]
    BadArn { field: &'static str, value: String, expected: &'static str },
    #[error("traffic.alb needs exactly one of listenerArn (its default actions) or ruleArn")]
    NoWeightLocation,
    #[error("traffic.alb has no testListenerArn or testRuleArn, so there is nowhere to send test traffic")]
    NoTestLocation,
    #[error("target group {target_group} is neither traffic.alb.stableTargetGroupArn nor canaryTargetGroupArn")]
    ForeignTargetGroup { target_group: String },
    #[error("{0}")]
    NotOurs(NotOurs),
    #[error("no free rule priority below {below} on listener {listener} for the header route: leave a free priority just below the rule's")]
    NoFreePriority { listener: String, below: i32 },
    #[error("{location} does not exist (it may have been deleted): check traffic.alb in the Rollout")]
    Missing { location: String },
    #[error(
        "{location}: wrote canary weight {wanted} but read back {read}; something else changes this rule (another controller, \
         an Ingress, infrastructure code): let one owner manage its weights"
    )]
    NotApplied { location: String, wanted: i32, read: String },
    #[error(transparent)]
    Aws(#[from] AwsFailure),
}

impl RouterError {
    /// A bounded label for metrics and events: throttled, aws_5xx, not_found, invalid, timeout, unexpected.
    pub fn category(&self) -> &'static str {
        match self {
            Self::WeightOutOfRange(_)
            | Self::SameTargetGroup(_)
            | Self::BadArn { .. }
            | Self::NoWeightLocation
            | Self::NoTestLocation
            | Self::ForeignTargetGroup { .. }
            | Self::NotOurs(_)
            | Self::NoFreePriority { .. } => "invalid",
            Self::Missing { .. } => "not_found",
            Self::NotApplied { .. } => "unexpected",
            Self::Aws(failure) => failure.category(),
        }
    }
}

impl From<RouterError> for PortError {
    fn from(error: RouterError) -> Self {
        PortError::new("ALB", error.category(), error)
    }
}

/// The [`TrafficRouter`] of one Rollout's `traffic.alb`.
pub struct AlbWeights<'a> {
    pub router: &'a AlbRouter,
    pub alb: &'a AlbTraffic,
}

#[async_trait::async_trait]
impl TrafficRouter for AlbWeights<'_> {
    async fn observe(&self, target_groups: Option<&TargetGroups>) -> Result<Option<TrafficObservation>, PortError> {
        let Some(groups) = target_groups else { return Ok(None) };
        Ok(Some(self.router.read(self.alb, &groups.stable, &groups.canary).await?.observation()))
    }

    async fn set_weight(&self, target_groups: &TargetGroups, canary_weight: i32, reclaim: bool) -> Result<Effect, PortError> {
        let (stable, canary) = (&target_groups.stable, &target_groups.canary);
        if reclaim {
            self.router.reclaim(self.alb, stable, canary, canary_weight).await?;
        } else {
            self.router.set_weight(self.alb, stable, canary, canary_weight).await?;
        }
        Ok(Effect::Changed)
    }

    async fn route_test_traffic(&self, target_group: &str) -> Result<Effect, PortError> {
        self.router.route_test_traffic(self.alb, target_group).await?;
        Ok(Effect::Changed)
    }

    async fn route_headers(&self, routes: &[crate::api::SetHeaderRoute], target_group: Option<&str>) -> Result<Effect, PortError> {
        self.router.set_header_routes(self.alb, routes, target_group).await?;
        Ok(Effect::Changed)
    }
}

/// A weight location whose forward action does not hold exactly the rollout's target groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotOurs {
    pub location: String,
    /// What the location's forward actions hold, for the message.
    pub found: String,
    pub expected: String,
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} has no forward action whose target groups are exactly {} (found: {}); Sluice changes only a forward action it owns: \
             make the forward action list both target groups (the canary one at weight 0), or fix traffic.alb",
            self.location, self.expected, self.found
        )
    }
}

/// What the router read: the canary's share and the healthy targets of both target groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlbState {
    /// Percent of traffic on the canary target group, 0–100; `None` when the forward action
    /// does not hold exactly the two target groups (see `not_ours`).
    pub canary_weight: Option<i32>,
    /// Why `canary_weight` is `None`.
    pub not_ours: Option<NotOurs>,
    /// IDs (IP addresses) of the stable target group's targets in state `healthy`.
    pub stable_healthy: BTreeSet<String>,
    /// IDs of the canary target group's targets in state `healthy`.
    pub canary_healthy: BTreeSet<String>,
    /// The canary weight this router last wrote to the location for the same canary group.
    pub last_written: Option<i32>,
}

impl AlbState {
    pub fn observation(&self) -> TrafficObservation {
        TrafficObservation {
            canary_weight: self.canary_weight,
            stable_healthy: self.stable_healthy.clone(),
            canary_healthy: self.canary_healthy.clone(),
            last_written: self.last_written,
            target_groups: None,
        }
    }
}

/// Sets and reads ALB weights. Build once from the shared `SdkConfig` and keep it.
#[derive(Debug)]
pub struct AlbRouter {
    client: elbv2::Client,
    calls: AtomicU64,
    /// The actions read last from each rule or listener, by its ARN.
    snapshots: Mutex<HashMap<String, Snapshot>>,
    /// The header route last set or found, by weight location and header: (target, when).
    header_routes: Mutex<HashMap<String, (Option<String>, Instant)>>,
    /// Healthy targets last read per target group, and when.
    health: Mutex<HashMap<String, (BTreeSet<String>, Instant)>>,
    /// The canary weight written last to each weight location, with that write's canary group.
    written: Mutex<HashMap<String, (String, i32)>>,
    /// The rules found forwarding to exactly a (stable, canary) pair of target groups.
    pairs: Mutex<HashMap<(String, String), Vec<String>>>,
    snapshot_max_age: Duration,
}

#[derive(Clone, Debug)]
struct Snapshot {
    actions: Vec<Action>,
    read_at: Instant,
}

/// Where a forward action lives.
#[derive(Clone, Copy, Debug)]
enum Location<'a> {
    Rule(&'a str),
    Listener(&'a str),
}

impl Location<'_> {
    fn arn(&self) -> &str {
        match self {
            Location::Rule(arn) | Location::Listener(arn) => arn,
        }
    }
}

impl std::fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Rule(arn) => write!(f, "listener rule {arn}"),
            Location::Listener(arn) => write!(f, "the default actions of listener {arn}"),
        }
    }
}

/// How long healthy targets read are reused: under the engine's 5 s poll while it waits for
/// targets, so each poll sees a fresh count and only bursts of passes share one.
const HEALTH_MAX_AGE: Duration = Duration::from_secs(4);

/// Default for [`AlbRouter::snapshot_max_age`].
pub const DEFAULT_SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(10);

impl AlbRouter {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        AlbRouter {
            client: elbv2::Client::new(config),
            calls: AtomicU64::new(0),
            snapshots: Mutex::new(HashMap::new()),
            header_routes: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            pairs: Mutex::new(HashMap::new()),
            snapshot_max_age: DEFAULT_SNAPSHOT_MAX_AGE,
        }
    }

    /// How old the last read of a rule may be for a weight change to write from it without
    /// reading first. Zero reads before every write (three calls per change instead of two).
    pub fn with_snapshot_max_age(mut self, age: Duration) -> Self {
        self.snapshot_max_age = age;
        self
    }

    pub fn snapshot_max_age(&self) -> Duration {
        self.snapshot_max_age
    }

    /// ELBv2 operations called so far (each counted once, whatever the SDK retried).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Reads the canary weight of the forward action holding exactly `stable_tg` and `canary_tg`
    /// (one DescribeRules or DescribeListeners) and the healthy targets of both target groups
    /// (one DescribeTargetHealth each, at the same time). What was read (or written and read
    /// back) within the snapshot age is not read again: passes come in bursts, and each would
    /// otherwise cost three calls. For ECS the caller passes which target
    /// group is stable now: the roles swap between deployments.
    pub async fn read(&self, alb: &AlbTraffic, stable_tg: &str, canary_tg: &str) -> Result<AlbState, RouterError> {
        let location = weight_location(alb)?;
        check_pair(stable_tg, canary_tg)?;
        let actions = async {
            match self.fresh_snapshot(location.arn()) {
                Some(actions) => Ok(actions),
                None => self.describe(location).await,
            }
        };
        let (actions, stable_healthy, canary_healthy) =
            futures::try_join!(actions, self.healthy_targets(stable_tg), self.healthy_targets(canary_tg))?;
        let (canary_weight, not_ours) = match find_split(&actions, stable_tg, canary_tg) {
            Ok(split) => (split.canary_percent(), None),
            Err(()) => (None, Some(not_ours(location, &actions, &[stable_tg, canary_tg]))),
        };
        let last_written = {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.get(location.arn()).filter(|(group, _)| group == canary_tg).map(|(_, weight)| *weight)
        };
        Ok(AlbState { canary_weight, not_ours, stable_healthy, canary_healthy, last_written })
    }

    /// Sets the canary's share to `canary_weight` percent (the stable one gets the rest): one
    /// ModifyRule (or ModifyListener) rewriting only the weights of the forward action holding
    /// the two target groups, then one read back. Returns the weight read back. Nothing is
    /// called when the arguments are wrong, nor when the last read (fresh) already shows it.
    pub async fn set_weight(&self, alb: &AlbTraffic, stable_tg: &str, canary_tg: &str, canary_weight: i32) -> Result<i32, RouterError> {
        self.write_weight(alb, stable_tg, canary_tg, canary_weight, false).await
    }

    /// Takes back a weight location whose forward action something else rewrote after Sluice
    /// verified a weight there (the engine says when): the rule's terminal action (a forward
    /// to other target groups, a redirect, a fixed response) is replaced by one forward to the
    /// two target groups at `canary_weight`; its authenticate actions and conditions stay.
    /// Where the forward action still holds both, this is [`AlbRouter::set_weight`].
    pub async fn reclaim(&self, alb: &AlbTraffic, stable_tg: &str, canary_tg: &str, canary_weight: i32) -> Result<i32, RouterError> {
        self.write_weight(alb, stable_tg, canary_tg, canary_weight, true).await
    }

    async fn write_weight(
        &self,
        alb: &AlbTraffic,
        stable_tg: &str,
        canary_tg: &str,
        canary_weight: i32,
        reclaim: bool,
    ) -> Result<i32, RouterError> {
        if !(0..=100).contains(&canary_weight) {
            return Err(RouterError::WeightOutOfRange(canary_weight));
        }
        let location = weight_location(alb)?;
        check_pair(stable_tg, canary_tg)?;
        let actions = match self.fresh_snapshot(location.arn()) {
            Some(actions) => actions,
            None => self.describe(location).await?,
        };
        let weights = [(stable_tg, 100 - canary_weight), (canary_tg, canary_weight)];
        let wanted = match find_split(&actions, stable_tg, canary_tg) {
            Ok(split) if split.canary_percent() == Some(canary_weight) && split.is_exact() => return Ok(canary_weight),
            Ok(split) => {
                let mut wanted = actions;
                set_weights(&mut wanted[split.index], &weights);
                wanted
            }
            Err(()) if reclaim => with_forward(actions, &weights),
            Err(()) => return Err(RouterError::NotOurs(not_ours(location, &actions, &[stable_tg, canary_tg]))),
        };
        self.write(location, wanted).await?;
        self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(location.arn().to_string(), (canary_tg.to_string(), canary_weight));
        let read = self.describe(location).await?;
        match find_split(&read, stable_tg, canary_tg).ok().and_then(|s| s.canary_percent()) {
            Some(weight) if weight == canary_weight => Ok(weight),
            other => Err(RouterError::NotApplied {
                location: location.to_string(),
                wanted: canary_weight,
                read: other.map_or_else(|| "no forward action holding both target groups".to_string(), |w| w.to_string()),
            }),
        }
    }

    /// Blue/green preview: points the forward action of `testListenerArn` (default actions) or
    /// `testRuleArn` at `target_group` alone (100 %). The action must forward only to the
    /// rollout's target groups. One write and one read back when it changes; one read when not,
    /// none when the last read is fresh.
    pub async fn route_test_traffic(&self, alb: &AlbTraffic, target_group: &str) -> Result<(), RouterError> {
        let location = match (&alb.test_rule_arn, &alb.test_listener_arn) {
            (Some(rule), None) => Location::Rule(check_arn("traffic.alb.testRuleArn", rule, "listener-rule/")?),
            (None, Some(listener)) => Location::Listener(check_arn("traffic.alb.testListenerArn", listener, "listener/")?),
            _ => return Err(RouterError::NoTestLocation),
        };
        let ours = [alb.stable_target_group_arn.as_str(), alb.canary_target_group_arn.as_str()];
        check_pair(ours[0], ours[1])?;
        if !ours.contains(&target_group) {
            return Err(RouterError::ForeignTargetGroup { target_group: target_group.to_string() });
        }
        let actions = match self.fresh_snapshot(location.arn()) {
            Some(actions) => actions,
            None => self.describe(location).await?,
        };
        let index = find_forward_within(&actions, &ours).ok_or_else(|| RouterError::NotOurs(not_ours(location, &actions, &ours)))?;
        if sends_all_to(&actions[index], target_group) {
            return Ok(());
        }
        let mut wanted = actions;
        route_all_to(&mut wanted[index], target_group);
        self.write(location, wanted).await?;
        let read = self.describe(location).await?;
        match find_forward_within(&read, &ours) {
            Some(i) if sends_all_to(&read[i], target_group) => Ok(()),
            _ => Err(RouterError::NotApplied {
                location: location.to_string(),
                wanted: 100,
                read: "another split of the test traffic".to_string(),
            }),
        }
    }

    /// Header routes (`setHeaderRoute` steps): with `Some(target_group)`, requests matching each
    /// route go to that target group whatever the weight, through one rule per route that Sluice
    /// creates on the same listener just before the weighted rule (its conditions plus one
    /// `http-header` condition per match); with `None`, or for a route no longer in `routes`,
    /// the rule is deleted. Sluice's header rules are found again as those with an `http-header`
    /// condition whose one forward goes to one of the rollout's target groups. Needs free
    /// priorities below the weighted rule's (or, for a listener's default actions, after all its
    /// rules). Nothing is called when the same routes were set within the snapshot age.
    pub async fn set_header_routes(
        &self,
        alb: &AlbTraffic,
        routes: &[SetHeaderRoute],
        target_group: Option<&str>,
    ) -> Result<(), RouterError> {
        let key = format!("{}|{}", weight_location(alb)?.arn(), serde_json::to_string(routes).unwrap_or_default());
        let wanted = target_group.map(str::to_string);
        let known = {
            let known = self.header_routes.lock().unwrap_or_else(|e| e.into_inner());
            known.get(&key).is_some_and(|(target, at)| *target == wanted && at.elapsed() <= self.snapshot_max_age)
        };
        if known {
            return Ok(());
        }
        let result = self.apply_header_routes(alb, routes, target_group).await;
        let mut known = self.header_routes.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|k, _| !k.starts_with(&format!("{}|", weight_location(alb).map(|l| l.arn().to_string()).unwrap_or_default())));
        if result.is_ok() {
            known.insert(key, (wanted, Instant::now()));
        }
        result
    }

    async fn apply_header_routes(
        &self,
        alb: &AlbTraffic,
        routes: &[SetHeaderRoute],
        target_group: Option<&str>,
    ) -> Result<(), RouterError> {
        let location = weight_location(alb)?;
        let ours = [alb.stable_target_group_arn.as_str(), alb.canary_target_group_arn.as_str()];
        check_pair(ours[0], ours[1])?;
        if let Some(tg) = target_group.filter(|tg| !ours.contains(tg)) {
            return Err(RouterError::ForeignTargetGroup { target_group: tg.to_string() });
        }
        let listener = match location {
            Location::Listener(arn) => arn.to_string(),
            Location::Rule(arn) => listener_of_rule(arn)?,
        };
        let rules = self.listener_rules(&listener).await?;
        let (below, base) = match location {
            Location::Listener(_) => (None, Vec::new()),
            Location::Rule(arn) => {
                let base = rules
                    .iter()
                    .find(|r| r.rule_arn() == Some(arn))
                    .ok_or_else(|| RouterError::Missing { location: location.to_string() })?;
                let below = base.priority().and_then(|p| p.parse::<i32>().ok()).unwrap_or(1);
                (Some(below), base.conditions().iter().cloned().map(writable_condition).collect::<Vec<_>>())
            }
        };
        // Each wanted rule's conditions: the weighted rule's, then the route's headers.
        let wanted: Vec<Vec<RuleCondition>> = match target_group {
            Some(_) => routes
                .iter()
                .filter(|r| !r.matches.is_empty())
                .map(|route| base.iter().cloned().chain(route.matches.iter().map(header_condition)).collect())
                .collect(),
            None => Vec::new(),
        };
        let owned = rules.iter().filter(|r| {
            r.is_default() != Some(true)
                && r.rule_arn() != Some(location.arn())
                && r.conditions().iter().any(|c| c.field() == Some("http-header"))
                && find_forward_within(r.actions(), &ours).is_some()
                && r.actions().iter().filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward)).count() == 1
        });
        let mut placed = vec![false; wanted.len()];
        for rule in owned {
            let matching = wanted.iter().enumerate().position(|(i, w)| !placed[i] && same_headers(rule.conditions(), w));
            match (matching, target_group) {
                (Some(i), Some(tg)) => {
                    placed[i] = true;
                    let actions = rule.actions().to_vec();
                    let Some(index) = find_forward_within(&actions, &ours) else { continue };
                    if !sends_all_to(&actions[index], tg) {
                        let mut retargeted = actions;
                        route_all_to(&mut retargeted[index], tg);
                        self.write(Location::Rule(rule.rule_arn().unwrap_or_default()), retargeted).await?;
                    }
                }
                _ => {
                    self.count();
                    let arn = rule.rule_arn().unwrap_or_default();
                    self.client.delete_rule().rule_arn(arn).send().await.map_err(|e| aws("DeleteRule", &e))?;
                }
            }
        }
        let Some(tg) = target_group else { return Ok(()) };
        let mut used = priorities(&rules);
        for (conditions, _) in wanted.into_iter().zip(placed).filter(|(_, placed)| !placed) {
            let priority = match below {
                None => used.last().map_or(1, |p| p + 1),
                Some(below) => {
                    (1..below).rev().find(|p| !used.contains(p)).ok_or(RouterError::NoFreePriority { listener: listener.clone(), below })?
                }
            };
            used.insert(priority);
            let forward = Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(TargetGroupTuple::builder().target_group_arn(tg).weight(1).build())
                        .build(),
                )
                .build();
            self.count();
            self.client
                .create_rule()
                .listener_arn(&listener)
                .priority(priority)
                .set_conditions(Some(conditions))
                .actions(forward)
                .send()
                .await
                .map_err(|e| aws("CreateRule", &e))?;
        }
        Ok(())
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn fresh_snapshot(&self, arn: &str) -> Option<Vec<Action>> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        // An empty snapshot is a sweep's note that the location has gone: a pass reads it again.
        let fresh = |s: &&Snapshot| s.read_at.elapsed() <= self.snapshot_max_age && !s.actions.is_empty();
        snapshots.get(arn).filter(fresh).map(|s| s.actions.clone())
    }

    fn remember(&self, arn: &str, actions: Option<&[Action]>) {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        match actions {
            Some(actions) => {
                snapshots.insert(arn.to_string(), Snapshot { actions: actions.to_vec(), read_at: Instant::now() });
            }
            None => {
                snapshots.remove(arn);
            }
        }
    }

    /// The actions of a rule, or a listener's default actions; remembered as the snapshot.
    async fn describe(&self, location: Location<'_>) -> Result<Vec<Action>, RouterError> {
        self.count();
        let missing = || RouterError::Missing { location: location.to_string() };
        let actions = match location {
            Location::Rule(arn) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(arn)
                    .send()
                    .await
                    .map_err(|e| not_found_as_missing(aws("DescribeRules", &e), location))?;
                out.rules().first().ok_or_else(missing)?.actions().to_vec()
            }
            Location::Listener(arn) => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(arn)
                    .send()
                    .await
                    .map_err(|e| not_found_as_missing(aws("DescribeListeners", &e), location))?;
                out.listeners().first().ok_or_else(missing)?.default_actions().to_vec()
            }
        };
        self.remember(location.arn(), Some(&actions));
        Ok(actions)
    }

    async fn write(&self, location: Location<'_>, actions: Vec<Action>) -> Result<(), RouterError> {
        self.count();
        // Whatever happens next, the snapshot no longer says what the rule holds.
        self.remember(location.arn(), None);
        let actions = actions.into_iter().map(writable_action).collect();
        match location {
            Location::Rule(arn) => {
                self.client
                    .modify_rule()
                    .rule_arn(arn)
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| not_found_as_missing(aws("ModifyRule", &e), location))?;
            }
            Location::Listener(arn) => {
                self.client
                    .modify_listener()
                    .listener_arn(arn)
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| not_found_as_missing(aws("ModifyListener", &e), location))?;
            }
        }
        Ok(())
    }

    /// IDs of the group's healthy targets, reused for a few seconds.
    pub(crate) async fn healthy_targets(&self, target_group: &str) -> Result<BTreeSet<String>, RouterError> {
        let cached = {
            let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let max_age = self.snapshot_max_age.min(HEALTH_MAX_AGE);
            health.get(target_group).filter(|(_, at)| at.elapsed() <= max_age).map(|(healthy, _)| healthy.clone())
        };
        if let Some(healthy) = cached {
            return Ok(healthy);
        }
        let healthy = self.describe_target_health(target_group).await?;
        self.health.lock().unwrap_or_else(|e| e.into_inner()).insert(target_group.to_string(), (healthy.clone(), Instant::now()));
        Ok(healthy)
    }

    async fn describe_target_health(&self, target_group: &str) -> Result<BTreeSet<String>, RouterError> {
        self.count();
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(|e| aws("DescribeTargetHealth", &e))?;
        let healthy = out
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy))
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect();
        Ok(healthy)
    }

    async fn listener_rules(&self, listener: &str) -> Result<Vec<Rule>, RouterError> {
        let mut rules = Vec::new();
        let mut marker = None;
        loop {
            self.count();
            let out = self
                .client
                .describe_rules()
                .listener_arn(listener)
                .page_size(sweep::PAGE_SIZE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| not_found_as_missing(aws("DescribeRules", &e), Location::Listener(listener)))?;
            rules.extend(out.rules().iter().cloned());
            match out.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_string()),
                _ => return Ok(rules),
            }
        }
    }
}

fn aws<E>(operation: &'static str, error: &elbv2::error::SdkError<E, elbv2::config::http::HttpResponse>) -> AwsFailure
where
    E: elbv2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsFailure::from_sdk("ELBv2", operation, error)
}

fn not_found_as_missing(failure: AwsFailure, location: Location<'_>) -> RouterError {
    if failure.kind == FailureKind::NotFound { RouterError::Missing { location: location.to_string() } } else { RouterError::Aws(failure) }
}

fn weight_location(alb: &AlbTraffic) -> Result<Location<'_>, RouterError> {
    match (&alb.rule_arn, &alb.listener_arn) {
        (Some(rule), None) => Ok(Location::Rule(check_arn("traffic.alb.ruleArn", rule, "listener-rule/")?)),
        (None, Some(listener)) => Ok(Location::Listener(check_arn("traffic.alb.listenerArn", listener, "listener/")?)),
        _ => Err(RouterError::NoWeightLocation),
    }
}

/// Checks the shape `arn:<partition>:elasticloadbalancing:<region>:<account>:<kind>/...`; AWS
/// (and moto) accept a forward to nonsense, so the router checks before it calls.
fn check_arn<'a>(field: &'static str, value: &'a str, kind: &'static str) -> Result<&'a str, RouterError> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "elasticloadbalancing"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5].strip_prefix(kind).is_some_and(|rest| rest.split('/').count() >= 2 && rest.split('/').all(|s| !s.is_empty()));
    if ok {
        Ok(value)
    } else {
        let expected = match kind {
            "targetgroup/" => "a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
            "listener/" => "a listener ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/LB/ID/ID)",
            _ => "a listener rule ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/LB/ID/ID/ID)",
        };
        Err(RouterError::BadArn { field, value: value.to_string(), expected })
    }
}

fn check_pair(stable_tg: &str, canary_tg: &str) -> Result<(), RouterError> {
    check_arn("stable target group", stable_tg, "targetgroup/")?;
    check_arn("canary target group", canary_tg, "targetgroup/")?;
    if stable_tg == canary_tg {
        return Err(RouterError::SameTargetGroup(stable_tg.to_string()));
    }
    Ok(())
}

/// `arn:...:listener-rule/app/LB/ID/LISTENER/RULE` → `arn:...:listener/app/LB/ID/LISTENER`.
fn listener_of_rule(rule: &str) -> Result<String, RouterError> {
    let bad = || RouterError::BadArn {
        field: "traffic.alb.ruleArn",
        value: rule.to_string(),
        expected: "a listener rule ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/LB/ID/ID/ID)",
    };
    let (head, tail) = rule.split_once(":listener-rule/").ok_or_else(bad)?;
    let (listener, _rule_id) = tail.rsplit_once('/').ok_or_else(bad)?;
    Ok(format!("{head}:listener/{listener}"))
}

/// The target groups of a forward action with their weights (the single-target form has weight 1).
fn forward_targets(action: &Action) -> Vec<(&str, i32)> {
    if action.r#type() != Some(&ActionTypeEnum::Forward) {
        return Vec::new();
    }
    match action.forward_config().map(|c| c.target_groups()).filter(|t| !t.is_empty()) {
        Some(tuples) => tuples.iter().map(|t| (t.target_group_arn().unwrap_or_default(), t.weight().unwrap_or(1))).collect(),
        None => action.target_group_arn().map(|arn| vec![(arn, 1)]).unwrap_or_default(),
    }
}

/// The forward action holding exactly the two target groups, and their weights.
#[derive(Clone, Copy, Debug)]
struct Split {
    index: usize,
    stable: i32,
    canary: i32,
}

impl Split {
    /// The canary's share in percent, rounded; `None` when both weights are 0.
    fn canary_percent(&self) -> Option<i32> {
        let total = self.stable + self.canary;
        (total > 0).then(|| (self.canary * 200 + total) / (2 * total))
    }

    /// Written the way Sluice writes weights (they add up to 100).
    fn is_exact(&self) -> bool {
        self.stable + self.canary == 100
    }
}

fn find_split(actions: &[Action], stable_tg: &str, canary_tg: &str) -> Result<Split, ()> {
    actions
        .iter()
        .enumerate()
        .find_map(|(index, action)| {
            let targets = forward_targets(action);
            let arns: BTreeSet<&str> = targets.iter().map(|(arn, _)| *arn).collect();
            (targets.len() == 2 && arns == BTreeSet::from([stable_tg, canary_tg])).then(|| {
                let weight = |tg: &str| targets.iter().find(|(arn, _)| *arn == tg).map_or(0, |(_, w)| *w);
                Split { index, stable: weight(stable_tg), canary: weight(canary_tg) }
            })
        })
        .ok_or(())
}

/// The forward action whose target groups are all among `ours` (test listener, header route).
fn find_forward_within(actions: &[Action], ours: &[&str]) -> Option<usize> {
    actions.iter().position(|action| {
        let targets = forward_targets(action);
        !targets.is_empty() && targets.iter().all(|(arn, _)| ours.contains(arn))
    })
}

fn sends_all_to(action: &Action, target_group: &str) -> bool {
    let targets = forward_targets(action);
    targets.iter().any(|(arn, w)| *arn == target_group && *w > 0) && targets.iter().all(|(arn, w)| *arn == target_group || *w == 0)
}

fn not_ours(location: Location<'_>, actions: &[Action], expected: &[&str]) -> NotOurs {
    let forwards: Vec<String> = actions
        .iter()
        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .map(|a| {
            let targets: Vec<String> = forward_targets(a).iter().map(|(arn, w)| format!("{arn} (weight {w})")).collect();
            format!("forward to {}", targets.join(", "))
        })
        .collect();
    let found = if forwards.is_empty() {
        let kinds: Vec<&str> = actions.iter().filter_map(|a| a.r#type()).map(|t| t.as_str()).collect();
        format!("no forward action, only [{}]", kinds.join(", "))
    } else {
        forwards.join("; ")
    };
    NotOurs { location: location.to_string(), found, expected: expected.join(" and ") }
}

/// Rewrites the weights of the given target groups in a forward action; everything else (the
/// order of the target groups, stickiness, the action's order) stays.
fn set_weights(action: &mut Action, weights: &[(&str, i32)]) {
    let Some(config) = action.forward_config.as_mut() else { return };
    for tuple in config.target_groups.iter_mut().flatten() {
        if let Some((_, weight)) = weights.iter().find(|(arn, _)| Some(*arn) == tuple.target_group_arn.as_deref()) {
            tuple.weight = Some(*weight);
        }
    }
    // A forward with several target groups is written through ForwardConfig alone.
    action.target_group_arn = None;
}

/// The actions with their terminal one (forward, redirect or fixed response) replaced by one
/// forward to `weights`, in the same place; authenticate actions stay before it.
fn with_forward(actions: Vec<Action>, weights: &[(&str, i32)]) -> Vec<Action> {
    let terminal =
        |a: &Action| matches!(a.r#type(), Some(ActionTypeEnum::Forward | ActionTypeEnum::Redirect | ActionTypeEnum::FixedResponse));
    let order = actions.iter().filter(|a| terminal(a)).filter_map(Action::order).min();
    let stickiness = actions.iter().find_map(|a| a.forward_config.as_ref().and_then(|c| c.target_group_stickiness_config.clone()));
    let tuples = weights.iter().map(|(arn, weight)| TargetGroupTuple::builder().target_group_arn(*arn).weight(*weight).build());
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .set_order(order)
        .forward_config(
            ForwardActionConfig::builder().set_target_groups(Some(tuples.collect())).set_target_group_stickiness_config(stickiness).build(),
        )
        .build();
    let mut kept: Vec<Action> = actions.into_iter().filter(|a| !terminal(a)).collect();
    kept.push(forward);
    kept
}

/// Points a forward action at one target group, keeping its stickiness and order.
fn route_all_to(action: &mut Action, target_group: &str) {
    let targets = forward_targets(action);
    if targets.len() >= 2 {
        let weights: Vec<(String, i32)> =
            targets.iter().map(|(arn, _)| (arn.to_string(), if *arn == target_group { 100 } else { 0 })).collect();
        let borrowed: Vec<(&str, i32)> = weights.iter().map(|(a, w)| (a.as_str(), *w)).collect();
        set_weights(action, &borrowed);
        return;
    }
    let stickiness = action.forward_config.as_ref().and_then(|c| c.target_group_stickiness_config.clone());
    action.forward_config = Some(
        ForwardActionConfig::builder()
            .target_groups(TargetGroupTuple::builder().target_group_arn(target_group).weight(1).build())
            .set_target_group_stickiness_config(stickiness)
            .build(),
    );
    action.target_group_arn = None;
}

/// An action as read, made fit to write back: an OIDC action's client secret is never returned,
/// so the write asks ELBv2 to keep the one it has.
fn writable_action(mut action: Action) -> Action {
    if let Some(oidc) = action.authenticate_oidc_config.as_mut()
        && oidc.client_secret.is_none()
    {
        oidc.use_existing_client_secret = Some(true);
    }
    action
}

/// A condition as read, made fit to write: DescribeRules returns both the legacy `Values` and
/// the config of host-header and path-pattern conditions; a write takes one of them.
fn writable_condition(mut condition: RuleCondition) -> RuleCondition {
    if condition.host_header_config.is_some() || condition.path_pattern_config.is_some() {
        condition.values = None;
    }
    condition
}

/// The `http-header` condition of one match: an exact value, or a prefix as the load
/// balancer's wildcard.
fn header_condition(header: &HeaderMatch) -> RuleCondition {
    let value = match (&header.header_value.exact, &header.header_value.prefix) {
        (Some(exact), _) => exact.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => String::new(),
    };
    RuleCondition::builder()
        .field("http-header")
        .http_header_config(HttpHeaderConditionConfig::builder().http_header_name(&header.header_name).values(value).build())
        .build()
}

/// The header conditions of a rule, comparable: names in lowercase, values as a set.
fn headers_of(conditions: &[RuleCondition]) -> BTreeSet<(String, BTreeSet<String>)> {
    conditions
        .iter()
        .filter(|c| c.field() == Some("http-header"))
        .filter_map(|c| c.http_header_config())
        .map(|h| (h.http_header_name().unwrap_or_default().to_ascii_lowercase(), h.values().iter().cloned().collect()))
        .collect()
}

fn same_headers(found: &[RuleCondition], wanted: &[RuleCondition]) -> bool {
    headers_of(found) == headers_of(wanted)
}

fn priorities(rules: &[Rule]) -> BTreeSet<i32> {
    rules.iter().filter_map(|r| r.priority()).filter_map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stable/0123456789abcdef";
    const CANARY: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/canary/0123456789abcdef";

    fn forward(weights: &[(&str, i32)]) -> Action {
        let tuples = weights.iter().map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(*arn).weight(*w).build()).collect();
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples)).build())
            .order(2)
            .build()
    }

    #[test]
    fn arns_are_checked_by_shape() {
        assert!(check_arn("x", STABLE, "targetgroup/").is_ok());
        for bad in [
            "",
            "nonsense",
            "arn:aws:ec2:us-east-1:1:targetgroup/a/b",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/a/b",
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/",
        ] {
            assert!(check_arn("x", bad, "targetgroup/").is_err(), "{bad}");
        }
        assert!(matches!(check_pair(STABLE, STABLE), Err(RouterError::SameTargetGroup(_))));
    }

    #[test]
    fn split_is_found_only_for_exactly_both_groups() {
        let other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/0123456789abcdef";
        let actions = vec![forward(&[(STABLE, 80), (CANARY, 20)])];
        let split = find_split(&actions, STABLE, CANARY).unwrap();
        assert_eq!(split.canary_percent(), Some(20));
        assert!(find_split(&[forward(&[(STABLE, 80), (other, 20)])], STABLE, CANARY).is_err());
        assert!(find_split(&[forward(&[(STABLE, 1)])], STABLE, CANARY).is_err());
        assert!(find_split(&[forward(&[(STABLE, 1), (CANARY, 1), (other, 1)])], STABLE, CANARY).is_err());
        let third = find_split(&[forward(&[(STABLE, 2), (CANARY, 1)])], STABLE, CANARY).unwrap();
        assert_eq!(third.canary_percent(), Some(33));
        assert_eq!(find_split(&[forward(&[(STABLE, 0), (CANARY, 0)])], STABLE, CANARY).unwrap().canary_percent(), None);
    }

    #[test]
    fn rewrite_keeps_order_and_stickiness() {
        let mut action = forward(&[(CANARY, 0), (STABLE, 100)]);
        action.forward_config.as_mut().unwrap().target_group_stickiness_config =
            Some(elbv2::types::TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(60).build());
        set_weights(&mut action, &[(STABLE, 75), (CANARY, 25)]);
        assert_eq!(forward_targets(&action), vec![(CANARY, 25), (STABLE, 75)]);
        assert_eq!(action.order(), Some(2));
        assert_eq!(action.forward_config().unwrap().target_group_stickiness_config().unwrap().duration_seconds(), Some(60));
    }

    #[test]
    fn an_oidc_action_without_its_secret_keeps_the_existing_one() {
        let config = elbv2::types::AuthenticateOidcActionConfig::builder().issuer("https://idp").client_id("shop").build();
        let action = Action::builder().r#type(ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(config).order(1).build();
        let written = writable_action(action);
        assert_eq!(written.authenticate_oidc_config().unwrap().use_existing_client_secret(), Some(true));
        let with_secret = elbv2::types::AuthenticateOidcActionConfig::builder().client_id("shop").client_secret("s").build();
        let action = Action::builder().r#type(ActionTypeEnum::AuthenticateOidc).authenticate_oidc_config(with_secret).build();
        assert_eq!(writable_action(action).authenticate_oidc_config().unwrap().use_existing_client_secret(), None);
    }

    #[test]
    fn listener_of_a_rule() {
        let rule =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/lb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";
        assert_eq!(
            listener_of_rule(rule).unwrap(),
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/50dc6c495c0c9188/f2f7dc8efc522ab2"
        );
    }
}
