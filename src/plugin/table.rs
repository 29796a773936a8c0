//! `list` and `get`: what each rollout is doing, one row or one block per rollout.

use kube::ResourceExt;

use super::describe;
use crate::api::Rollout;

/// A table like `kubectl get`'s, with a NAMESPACE column when listing every namespace.
pub fn list(rollouts: &[Rollout], all_namespaces: bool) -> String {
    let mut header = vec!["NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "STABLE", "UPDATE", "READY", "UPDATED"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let mut sorted: Vec<&Rollout> = rollouts.iter().collect();
    sorted.sort_by_key(|r| (r.namespace(), r.name_any()));
    for rollout in sorted {
        let status = describe::status(rollout);
        let mut row = vec![
            rollout.name_any(),
            describe::strategy_name(rollout).to_string(),
            describe::phase(rollout),
            describe::step(rollout),
            status.weight_shown(),
            describe::revision(&status.stable_revision).to_string(),
            describe::revision(&status.update_revision).to_string(),
            format!("{}/{}", status.ready_replicas, status.desired_replicas),
            status.updated_replicas.to_string(),
        ];
        if all_namespaces {
            row.insert(0, rollout.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// One rollout, a field per line.
pub fn get(rollout: &Rollout) -> String {
    let status = describe::status(rollout);
    let verified = status.verified_weight.map_or_else(|| "not verified yet".to_string(), |w| format!("verified {w}%"));
    let fields = [
        ("Name", rollout.name_any()),
        ("Namespace", rollout.namespace().unwrap_or_default()),
        ("Strategy", describe::strategy_name(rollout).to_string()),
        ("Phase", describe::phase(rollout)),
        ("Step", describe::step(rollout)),
        ("Weight", format!("desired {}%, {verified}", status.canary_weight)),
        (
            "Revisions",
            format!("stable {}, update {}", describe::revision(&status.stable_revision), describe::revision(&status.update_revision)),
        ),
        (
            "Replicas",
            format!(
                "{} desired, {} current, {} updated, {} ready, {} available",
                status.desired_replicas, status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas
            ),
        ),
        ("Paused", if rollout.spec.paused { "yes, by spec.paused".to_string() } else { "no".to_string() }),
        ("Message", status.message.clone().unwrap_or_else(|| "-".to_string())),
    ];
    fields.iter().map(|(key, value)| format!("{:<11}{value}\n", format!("{key}:"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(namespace: &str, name: &str, strategy: serde_json::Value, status: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"workload": {"kubernetes": {"selector": {}, "template": {}}}, "strategy": strategy},
            "status": status
        }))
        .unwrap()
    }

    fn two() -> Vec<Rollout> {
        vec![
            rollout(
                "shop",
                "web",
                json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}),
                json!({"phase": "Paused", "currentStepIndex": 1, "canaryWeight": 20, "verifiedWeight": 20,
                    "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
                    "desiredReplicas": 5, "readyReplicas": 6, "updatedReplicas": 1}),
            ),
            rollout("admin", "api", json!({"rolling": {}}), json!({})),
        ]
    }

    #[test]
    fn a_row_per_rollout() {
        assert_eq!(
            list(&two(), false),
            "\
NAME   STRATEGY   PHASE    STEP   WEIGHT   STABLE       UPDATE       READY   UPDATED
api    rolling    -        -      -        -            -            0/0     0
web    canary     Paused   1/2    20       3f2a9c01bd   9b1c2d3e4f   6/5     1
"
        );
    }

    #[test]
    fn the_weight_is_what_traffic_does_with_the_desired_weight_beside_it_when_they_differ() {
        let aborted = rollout(
            "shop",
            "web",
            json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
            json!({"phase": "Degraded", "abort": true, "canaryWeight": 50, "verifiedWeight": 0}),
        );
        let table = list(&[aborted], false);
        assert!(table.contains(" 0 (desired 50) "), "{table}");
    }

    #[test]
    fn all_namespaces_adds_the_namespace() {
        let table = list(&two(), true);
        assert!(table.starts_with("NAMESPACE   NAME   STRATEGY"), "{table}");
        assert!(table.contains("\nshop        web    canary"), "{table}");
    }

    #[test]
    fn get_shows_one_rollout() {
        let text = get(&two()[0]);
        assert!(text.contains("Phase:     Paused\n"), "{text}");
        assert!(text.contains("Step:      1/2\n"), "{text}");
        assert!(text.contains("Weight:    desired 20%, verified 20%\n"), "{text}");
        assert!(text.contains("Revisions: stable 3f2a9c01bd, update 9b1c2d3e4f\n"), "{text}");
    }
}
