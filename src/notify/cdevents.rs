//! Notifications as CDEvents (spec v0.4.1, <https://cdevents.dev>), what SNS topics and
//! EventBridge buses are sent, so that delivery pipelines can consume them.
//!
//! Only the reasons with a CDEvents counterpart are sent: a revision's rollout starting is a
//! pipeline run started; a promotion upgrades the service; an abort rolls it back to the stable
//! revision; Healthy (every replica of the revision ready, at rest) is the service deployed.
//! Steps, pauses and drift have no CDEvents type and stay with webhooks and Kubernetes Events.

use serde_json::{Value, json};

use crate::api::PendingNotification;

/// The CDEvents specification version the events follow.
pub const SPEC_VERSION: &str = "0.4.1";

pub const PIPELINE_RUN_STARTED: &str = "dev.cdevents.pipelinerun.started.0.2.0";
pub const SERVICE_UPGRADED: &str = "dev.cdevents.service.upgraded.0.2.0";
pub const SERVICE_ROLLED_BACK: &str = "dev.cdevents.service.rolledback.0.2.0";
pub const SERVICE_DEPLOYED: &str = "dev.cdevents.service.deployed.0.2.0";

/// The CDEvents type of a notification's reason (as [`super::reason_of`] names it), if any.
pub fn type_of(reason: &str) -> Option<&'static str> {
    match reason {
        "Started" => Some(PIPELINE_RUN_STARTED),
        "Promoted" => Some(SERVICE_UPGRADED),
        "Aborted" => Some(SERVICE_ROLLED_BACK),
        "Healthy" => Some(SERVICE_DEPLOYED),
        _ => None,
    }
}

/// The Rollout as a URI reference: its path on the Kubernetes API.
fn rollout_path(namespace: &str, rollout: &str) -> String {
    format!("/apis/sluice.dev/v1alpha1/namespaces/{namespace}/rollouts/{rollout}")
}

/// A revision of the Rollout as a package URL (the revision is the pod template's or task
/// definition's hash, which is what Sluice rolls out).
fn artifact_id(namespace: &str, rollout: &str, revision: Option<&str>) -> String {
    match revision {
        Some(revision) => format!("pkg:generic/{namespace}/{rollout}@{revision}"),
        None => format!("pkg:generic/{namespace}/{rollout}"),
    }
}

/// The CDEvent of a notification, or `None` for a reason CDEvents has no type for. Its
/// `context.id` is the notification's id, the same on every delivery, for consumers to drop
/// repeats; Sluice's own fields (the webhook payload's) are in `customData`.
pub fn event(namespace: &str, rollout: &str, notification: &PendingNotification) -> Option<Value> {
    let kind = type_of(&notification.reason)?;
    let source = rollout_path(namespace, rollout);
    let environment = json!({ "id": namespace });
    let subject = match kind {
        PIPELINE_RUN_STARTED => json!({
            "id": format!("{namespace}/{rollout}/{}", notification.revision.as_deref().unwrap_or_default()),
            "source": source,
            "type": "pipelineRun",
            "content": { "pipelineName": rollout, "url": source },
        }),
        _ => {
            // A rollback's artifact is the revision production returns to, not the one aborted.
            let revision = match kind {
                SERVICE_ROLLED_BACK => notification.stable_revision.as_deref().or(notification.revision.as_deref()),
                _ => notification.revision.as_deref(),
            };
            json!({
                "id": format!("{namespace}/{rollout}"),
                "source": source,
                "type": "service",
                "content": { "environment": environment, "artifactId": artifact_id(namespace, rollout, revision) },
            })
        }
    };
    Some(json!({
        "context": {
            "version": SPEC_VERSION,
            "id": notification.id,
            "source": source,
            "type": kind,
            "timestamp": notification.time.0.to_string(),
        },
        "subject": subject,
        "customData": {
            "rollout": rollout,
            "namespace": namespace,
            "reason": notification.reason,
            "message": notification.message,
            "revision": notification.revision,
            "stableRevision": notification.stable_revision,
            "phase": notification.phase,
            "step": notification.step,
        },
        "customDataContentType": "application/json",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn notification(reason: &str) -> PendingNotification {
        PendingNotification {
            id: "3f1c0a9e5b7d2c4e8a6f1b3d5c7e9a0b".into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            revision: Some("7f9c2".into()),
            stable_revision: Some("5d1e8".into()),
            phase: Some("Progressing".into()),
            step: Some(2),
            time: Time("2026-03-01T10:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn reasons_map_onto_the_cdevents_of_a_deployment_and_the_rest_are_not_sent() {
        let mapped: Vec<(&str, Option<&str>)> =
            ["Started", "StepCompleted", "Paused", "Promoted", "Aborted", "Healthy", "TrafficDrift"].map(|r| (r, type_of(r))).into();
        assert_eq!(
            mapped,
            [
                ("Started", Some("dev.cdevents.pipelinerun.started.0.2.0")),
                ("StepCompleted", None),
                ("Paused", None),
                ("Promoted", Some("dev.cdevents.service.upgraded.0.2.0")),
                ("Aborted", Some("dev.cdevents.service.rolledback.0.2.0")),
                ("Healthy", Some("dev.cdevents.service.deployed.0.2.0")),
                ("TrafficDrift", None),
            ]
        );
        assert_eq!(event("shop", "checkout", &notification("Paused")), None);
    }

    #[test]
    fn a_promotion_is_the_service_upgraded_to_the_new_revision() {
        let event = event("shop", "checkout", &notification("Promoted")).unwrap();
        assert_eq!(
            event,
            json!({
                "context": {
                    "version": "0.4.1",
                    "id": "3f1c0a9e5b7d2c4e8a6f1b3d5c7e9a0b",
                    "source": "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/checkout",
                    "type": "dev.cdevents.service.upgraded.0.2.0",
                    "timestamp": "2026-03-01T10:00:00Z",
                },
                "subject": {
                    "id": "shop/checkout",
                    "source": "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/checkout",
                    "type": "service",
                    "content": {"environment": {"id": "shop"}, "artifactId": "pkg:generic/shop/checkout@7f9c2"},
                },
                "customData": {
                    "rollout": "checkout", "namespace": "shop", "reason": "Promoted", "message": "Promoted message",
                    "revision": "7f9c2", "stableRevision": "5d1e8", "phase": "Progressing", "step": 2,
                },
                "customDataContentType": "application/json",
            })
        );
    }

    #[test]
    fn a_rollback_names_the_stable_revision_and_a_start_is_a_pipeline_run_of_the_revision() {
        let rolled_back = event("shop", "checkout", &notification("Aborted")).unwrap();
        assert_eq!(rolled_back["subject"]["content"]["artifactId"], "pkg:generic/shop/checkout@5d1e8");
        let first = PendingNotification { stable_revision: None, revision: None, ..notification("Aborted") };
        assert_eq!(event("shop", "checkout", &first).unwrap()["subject"]["content"]["artifactId"], "pkg:generic/shop/checkout");

        let started = event("shop", "checkout", &notification("Started")).unwrap();
        assert_eq!(started["context"]["type"], PIPELINE_RUN_STARTED);
        assert_eq!(
            started["subject"],
            json!({
                "id": "shop/checkout/7f9c2",
                "source": "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/checkout",
                "type": "pipelineRun",
                "content": {"pipelineName": "checkout", "url": "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/checkout"},
            })
        );
        let deployed = event("shop", "checkout", &notification("Healthy")).unwrap();
        assert_eq!(deployed["subject"]["content"]["artifactId"], "pkg:generic/shop/checkout@7f9c2");
        assert_eq!(deployed["context"]["id"], started["context"]["id"], "the id is the notification's");
    }
}
