//! Drift checks (`--drift-check-interval`): at every interval the weight locations of every
//! Rollout behind an ALB are read in batches, one call per listener or load balancer
//! ([`crate::traffic::alb::AlbRouter::sweep`]), and each Rollout whose location changed since
//! Sluice last read or wrote it gets a pass. The pass says what drifted and restores the planned
//! weight. Off by default, and then no call is made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use super::Context;
use super::watched::WatchedRollout;

/// The shortest interval the controller takes: below it, a fleet's reads would crowd out the
/// account's ELBv2 request rate that passes share.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The Rollouts to pass again, as the checks find them.
pub fn checks(interval: Duration, ctx: Arc<Context>) -> futures::stream::BoxStream<'static, ObjectRef<WatchedRollout>> {
    let (found, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once; passes at start read every location anyway.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if !*ctx.synced.borrow() {
                continue;
            }
            for rollout in drifted(&ctx).await {
                if found.send(rollout).is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|r| (r, receiver)) }))
}

/// One check: the Rollouts whose weight location changed.
async fn drifted(ctx: &Context) -> Vec<ObjectRef<WatchedRollout>> {
    let mut by_location: BTreeMap<String, Vec<ObjectRef<WatchedRollout>>> = BTreeMap::new();
    for watched in ctx.rollouts.state() {
        let WatchedRollout::Readable(rollout) = watched.as_ref() else { continue };
        let Some(alb) = rollout.spec.traffic.as_ref().and_then(|t| t.alb.as_ref()) else { continue };
        let Some(location) = alb.rule_arn.as_ref().or(alb.listener_arn.as_ref()) else { continue };
        // Only what the Rollout's namespace may name is read on its behalf.
        if ctx.tenancy.check_arns(rollout).await.is_err() {
            continue;
        }
        let reference = ObjectRef::new(&rollout.name_any()).within(&rollout.namespace().unwrap_or_default());
        by_location.entry(location.clone()).or_default().push(reference);
    }
    if by_location.is_empty() {
        return Vec::new();
    }
    let locations: BTreeSet<String> = by_location.keys().cloned().collect();
    let sweep = ctx.router.sweep(&locations).await;
    for failure in &sweep.failed {
        warn!(error = %failure, "drift check: a batch of weight locations could not be read; it is read again next interval");
    }
    sweep.changed.iter().filter_map(|location| by_location.remove(location)).flatten().collect()
}
