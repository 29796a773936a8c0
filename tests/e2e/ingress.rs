//! Weights through Ingresses, as most EKS users own their listeners: the real AWS Load
//! Balancer Controller (built from its Go module, run beside the stack against moto) makes a
//! load balancer, its listener rule and target groups from each Ingress, and registers the
//! Services' pods through its own TargetGroupBindings. Sluice writes only the Ingresses'
//! weighted action and reads what reached ELBv2 back, for two Ingresses that move together.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::rollout;
use crate::support::load_balancer_controller::{load_balancer, rule_weights, target_groups};
use crate::support::scene::Scene;
use crate::support::wait_for;

const ACTION: &str = "alb.ingress.kubernetes.io/actions.web-stable";

fn phase_and_weight(r: &Rollout) -> (Option<RolloutPhase>, Option<i32>) {
    r.status.as_ref().map_or((None, None), |s| (s.phase, s.verified_weight))
}

register_test!(510, two_ingresses_move_together_through_the_aws_load_balancer_controller);
async fn two_ingresses_move_together_through_the_aws_load_balancer_controller(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "ingress", &["web-stable", "web-canary"]).await;
    let ingresses: Api<Ingress> = Api::namespaced(s.client.clone(), &s.ns);
    for (name, path) in [("web", "/"), ("web-internal", "/internal")] {
        ingresses.create(&PostParams::default(), &h.load_balancer_controller.ingress(name, path)).await.expect("Ingress created");
    }
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 20}, {"pause": {}}]}});
    let mut r = rollout(2, "web:1", strategy);
    // The API server refuses a mix of the two modes, and Ingresses without the Services' port.
    let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2";
    for (alb, says) in [
        (json!({"ingresses": ["web"], "servicePort": 80, "listenerArn": listener}), "leaves the listener, its rules and target groups"),
        (json!({"ingresses": ["web"]}), "traffic.alb.ingresses needs servicePort"),
    ] {
        r.spec.traffic = Some(serde_json::from_value(json!({"alb": alb})).unwrap());
        let refused = s.rollouts.create(&PostParams::default(), &r).await.expect_err("refused by the API server");
        assert!(refused.to_string().contains(says), "{refused}");
    }
    r.spec.traffic = Some(serde_json::from_value(json!({"alb": {"ingresses": ["web", "web-internal"], "servicePort": 80}})).unwrap());
    s.create(&r).await;
    // The first pass writes the action; the controller then makes the rules and target groups.
    s.wait("web:1 at rest with weight 0 read back from ELBv2", |r| phase_and_weight(r) == (Some(RolloutPhase::Healthy), Some(0))).await;
    let elb = elbv2::Client::new(&h.stack.aws());
    let mut pairs = Vec::new();
    for name in ["web", "web-internal"] {
        let ingress = ingresses.get(name).await.unwrap();
        let action = ingress.metadata.annotations.as_ref().and_then(|a| a.get(ACTION)).expect("the action written").clone();
        let action: serde_json::Value = serde_json::from_str(&action).unwrap();
        assert_eq!(action["forwardConfig"]["targetGroups"][1], json!({"serviceName": "web-canary", "servicePort": 80, "weight": 0}));
        let groups =
            wait_for(&format!("the target groups of Ingress {name}"), Duration::from_secs(60), || target_groups(&s.client, &s.ns, name))
                .await;
        let lb = load_balancer(&elb, &ingresses, name).await;
        assert_eq!(rule_weights(&elb, &lb, &groups).await, [(100, 0)], "Ingress {name}: one rule, all on stable");
        pairs.push((lb, groups));
    }
    assert_ne!(pairs[0].1, pairs[1].1, "each Ingress has target groups of its own");

    s.set_image("web:2").await;
    let paused = s.wait("paused at 20 % read back from ELBv2", |r| phase_and_weight(r) == (Some(RolloutPhase::Paused), Some(20))).await;
    for (lb, groups) in &pairs {
        assert_eq!(rule_weights(&elb, lb, groups).await, [(80, 20)], "both Ingresses' rules moved");
    }
    let status = paused.status.unwrap();
    assert_eq!(status.canary_target_group.as_deref(), Some(pairs[0].1.1.as_str()), "the first Ingress's canary group");

    s.promote_full("ingress-promote").await;
    s.wait("web:2 at rest, all traffic on stable", |r| phase_and_weight(r) == (Some(RolloutPhase::Healthy), Some(0))).await;
    for (lb, groups) in &pairs {
        assert_eq!(rule_weights(&elb, lb, groups).await, [(100, 0)]);
    }
    let events = s.events().await;
    let weights: Vec<&str> = events.iter().filter(|(reason, _, _)| reason == "WeightSet").map(|(_, note, _)| note.as_str()).collect();
    assert!(weights.iter().any(|n| n.starts_with("canary weight is 20%")), "{weights:?}");
}
