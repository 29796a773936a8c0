//! Delivery (DORA) observations from one pass: the status before it and the status it writes.
//!
//! What must outlive a pass (when a revision first appeared, when production failed) is
//! kept in `status.delivery`, so a restarted or newly elected controller observes the same.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DeliveryStatus, RolloutPhase, RolloutStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Promoted,
    Aborted,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::Aborted => "aborted",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A deployment ended: the new revision became stable, or it was aborted.
    Deployment(Outcome),
    /// From the commit (or the revision's first appearance) to Healthy with it.
    LeadTime(Duration),
    /// From an abort to Healthy again.
    TimeToRestore(Duration),
}

/// Records in `after.delivery` what later passes need, and returns what this pass observed.
pub fn observe(before: &RolloutStatus, after: &mut RolloutStatus, commit_time: Option<&str>, now: Timestamp) -> Vec<Observation> {
    let mut delivery = after.delivery.clone().unwrap_or_default();
    let mut seen = Vec::new();
    let update = after.update_revision.clone();
    if update.is_some() && update != after.stable_revision && delivery.revision != update {
        delivery.revision = update.clone();
        delivery.revision_seen_at = Some(Time(now));
    }
    // The first revision goes straight to stable: nothing was delivered over another.
    if before.stable_revision.is_some() && after.stable_revision != before.stable_revision {
        seen.push(Observation::Deployment(Outcome::Promoted));
    }
    if after.abort && !before.abort {
        seen.push(Observation::Deployment(Outcome::Aborted));
        delivery.failed_since.get_or_insert(Time(now));
    }
    if after.phase == Some(RolloutPhase::Healthy) && before.phase != Some(RolloutPhase::Healthy) {
        if let Some(since) = delivery.failed_since.take() {
            seen.push(Observation::TimeToRestore(elapsed(since.0, now)));
        }
        if delivery.revision.is_some() && delivery.revision == after.stable_revision {
            let committed = commit_time.and_then(|t| t.parse::<Timestamp>().ok()).filter(|t| *t <= now);
            let start = committed.or(delivery.revision_seen_at.as_ref().map(|t| t.0));
            if let Some(start) = start {
                seen.push(Observation::LeadTime(elapsed(start, now)));
            }
        }
        if after.stable_revision == update {
            delivery.revision = None;
            delivery.revision_seen_at = None;
        }
    }
    after.delivery = (delivery != DeliveryStatus::default()).then_some(delivery);
    seen
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn status(phase: RolloutPhase, stable: &str, update: &str) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase),
            stable_revision: Some(stable.into()),
            update_revision: Some(update.into()),
            ..Default::default()
        }
    }

    /// Runs passes through statuses, carrying `delivery` as the engine does (it copies the status).
    fn passes(steps: &[(i64, RolloutStatus)], commit_time: Option<&str>) -> Vec<(i64, Observation)> {
        let mut before = RolloutStatus::default();
        let mut seen = Vec::new();
        for (second, next) in steps {
            let mut after = next.clone();
            after.delivery = before.delivery.clone();
            seen.extend(observe(&before, &mut after, commit_time, at(*second)).into_iter().map(|o| (*second, o)));
            before = after;
        }
        seen
    }

    #[test]
    fn a_promotion_counts_once_and_lead_time_runs_from_first_sight_to_healthy() {
        let seen = passes(
            &[
                (0, status(RolloutPhase::Healthy, "a", "a")),
                (100, status(RolloutPhase::Progressing, "a", "b")),
                (160, status(RolloutPhase::Paused, "a", "b")),
                (400, status(RolloutPhase::Progressing, "b", "b")),
                (430, status(RolloutPhase::Healthy, "b", "b")),
                (500, status(RolloutPhase::Healthy, "b", "b")),
            ],
            None,
        );
        assert_eq!(seen, [(400, Observation::Deployment(Outcome::Promoted)), (430, Observation::LeadTime(Duration::from_secs(330)))]);
    }

    #[test]
    fn the_commit_time_annotation_starts_the_lead_time() {
        let commit = at(-3600).to_string();
        let seen = passes(
            &[
                (0, status(RolloutPhase::Healthy, "a", "a")),
                (10, status(RolloutPhase::Progressing, "a", "b")),
                (70, status(RolloutPhase::Healthy, "b", "b")),
            ],
            Some(&commit),
        );
        assert_eq!(seen.last(), Some(&(70, Observation::LeadTime(Duration::from_secs(3670)))));
        let future = at(10_000).to_string();
        let seen = passes(
            &[
                (0, status(RolloutPhase::Healthy, "a", "a")),
                (10, status(RolloutPhase::Progressing, "a", "b")),
                (70, status(RolloutPhase::Healthy, "b", "b")),
            ],
            Some(&future),
        );
        assert_eq!(seen.last(), Some(&(70, Observation::LeadTime(Duration::from_secs(60)))), "a commit time in the future is ignored");
    }

    #[test]
    fn an_abort_then_healthy_again_is_a_failure_and_a_restore() {
        let aborted = RolloutStatus { abort: true, ..status(RolloutPhase::Degraded, "a", "b") };
        let seen = passes(
            &[
                (0, status(RolloutPhase::Healthy, "a", "a")),
                (10, status(RolloutPhase::Progressing, "a", "b")),
                (50, aborted.clone()),
                (60, aborted),
                // The person undoes: the spec asks for the stable revision again.
                (300, status(RolloutPhase::Progressing, "a", "a")),
                (320, status(RolloutPhase::Healthy, "a", "a")),
            ],
            None,
        );
        assert_eq!(seen, [(50, Observation::Deployment(Outcome::Aborted)), (320, Observation::TimeToRestore(Duration::from_secs(270)))]);
    }

    #[test]
    fn a_retry_that_promotes_restores_and_delivers() {
        let aborted = RolloutStatus { abort: true, ..status(RolloutPhase::Degraded, "a", "b") };
        let seen = passes(
            &[
                (0, status(RolloutPhase::Healthy, "a", "a")),
                (10, status(RolloutPhase::Progressing, "a", "b")),
                (20, aborted),
                (100, status(RolloutPhase::Progressing, "a", "b")),
                (200, status(RolloutPhase::Progressing, "b", "b")),
                (210, status(RolloutPhase::Healthy, "b", "b")),
            ],
            None,
        );
        assert_eq!(
            seen,
            [
                (20, Observation::Deployment(Outcome::Aborted)),
                (200, Observation::Deployment(Outcome::Promoted)),
                (210, Observation::TimeToRestore(Duration::from_secs(190))),
                (210, Observation::LeadTime(Duration::from_secs(200))),
            ]
        );
    }

    #[test]
    fn delivery_bookkeeping_is_kept_in_the_status_until_the_revision_is_delivered() {
        let mut after = status(RolloutPhase::Progressing, "a", "b");
        observe(&status(RolloutPhase::Healthy, "a", "a"), &mut after, None, at(5));
        assert_eq!(after.delivery.as_ref().unwrap().revision_seen_at, Some(Time(at(5))));
        let before = after.clone();
        let mut healthy = status(RolloutPhase::Healthy, "b", "b");
        healthy.delivery = before.delivery.clone();
        observe(&before, &mut healthy, None, at(9));
        assert_eq!(healthy.delivery, None, "nothing kept once the revision is delivered");
    }
}
