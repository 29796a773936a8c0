//! Drift checks, batched: every rollout's weight location is read in one call per listener
//! (DescribeRules by listener, for rule locations) or per load balancer (DescribeListeners by
//! load balancer, for listeners' default actions), paged at ELBv2's largest page. What was read
//! is compared with the snapshot the router keeps of each location, so the caller learns which
//! locations changed since Sluice last read or wrote them, and a pass restores only those.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, AlbRouter, FailureKind, RouterError, Snapshot, aws, listener_of_rule};

/// ELBv2's largest page for DescribeRules and DescribeListeners.
pub(super) const PAGE_SIZE: i32 = 400;

/// What one sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Locations (rule or listener ARNs) whose actions differ from the router's snapshot, have
    /// none, or have gone.
    pub changed: BTreeSet<String>,
    /// Batches that could not be read, and why: their locations are checked again next sweep.
    pub failed: Vec<RouterError>,
}

/// Where a batch of locations is read from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Batch {
    /// The rules of one listener.
    Listener(String),
    /// The listeners of one load balancer.
    LoadBalancer(String),
}

impl AlbRouter {
    /// Reads every location of `locations` (weight locations as `traffic.alb` names them) in
    /// batches and says which changed. The snapshots are updated with what was read.
    pub async fn sweep(&self, locations: &BTreeSet<String>) -> Sweep {
        let mut batches: BTreeMap<Batch, Vec<&str>> = BTreeMap::new();
        for location in locations {
            match batch_of(location) {
                Some(batch) => batches.entry(batch).or_default().push(location),
                None => continue,
            }
        }
        let mut sweep = Sweep::default();
        for (batch, wanted) in batches {
            let read = match &batch {
                Batch::Listener(listener) => self.rule_actions(listener).await,
                Batch::LoadBalancer(load_balancer) => self.listener_actions(load_balancer).await,
            };
            match read {
                Ok(mut actions) => {
                    for location in wanted {
                        // A location not in its batch has gone; an empty snapshot says so.
                        let now = actions.remove(location).unwrap_or_default();
                        if self.refresh(location, now) {
                            sweep.changed.insert(location.to_string());
                        }
                    }
                }
                Err(error) => sweep.failed.push(error),
            }
        }
        sweep
    }

    /// Stores what a sweep read; true when it differs from the snapshot or there was none.
    fn refresh(&self, location: &str, actions: Vec<Action>) -> bool {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        let changed = snapshots.get(location).is_none_or(|s| s.actions != actions);
        snapshots.insert(location.to_string(), Snapshot { actions, read_at: std::time::Instant::now() });
        changed
    }

    /// The actions of every rule of a listener, by rule ARN.
    async fn rule_actions(&self, listener: &str) -> Result<BTreeMap<String, Vec<Action>>, RouterError> {
        let rules = self.listener_rules(listener).await?;
        Ok(rules.into_iter().filter_map(|rule| Some((rule.rule_arn?, rule.actions.unwrap_or_default()))).collect())
    }

    /// The default actions of every listener of a load balancer, by listener ARN.
    async fn listener_actions(&self, load_balancer: &str) -> Result<BTreeMap<String, Vec<Action>>, RouterError> {
        let mut found = BTreeMap::new();
        let mut marker = None;
        loop {
            self.count();
            let out = self
                .client
                .describe_listeners()
                .load_balancer_arn(load_balancer)
                .page_size(PAGE_SIZE)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| match aws("DescribeListeners", &e) {
                    gone if gone.kind == FailureKind::NotFound => {
                        RouterError::Missing { location: format!("load balancer {load_balancer}") }
                    }
                    other => RouterError::Aws(other),
                })?;
            for listener in out.listeners() {
                if let Some(arn) = listener.listener_arn() {
                    found.insert(arn.to_string(), listener.default_actions().to_vec());
                }
            }
            match out.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_string()),
                _ => return Ok(found),
            }
        }
    }
}

/// The batch a location is read in; `None` for what is not a rule or listener ARN (the pass
/// reports those).
fn batch_of(location: &str) -> Option<Batch> {
    if location.contains(":listener-rule/") {
        return listener_of_rule(location).ok().map(Batch::Listener);
    }
    let (head, tail) = location.split_once(":listener/")?;
    let (load_balancer, _listener_id) = tail.rsplit_once('/')?;
    Some(Batch::LoadBalancer(format!("{head}:loadbalancer/{load_balancer}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_batch_by_listener_and_listeners_by_load_balancer() {
        let rule =
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";
        let listener = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2";
        let load_balancer = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
        assert_eq!(batch_of(rule), Some(Batch::Listener(listener.to_string())));
        assert_eq!(batch_of(listener), Some(Batch::LoadBalancer(load_balancer.to_string())));
        assert_eq!(batch_of("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/1"), None);
    }
}
