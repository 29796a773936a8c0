//! pause, resume, restart, set image and undo change the Rollout's spec, and say clearly when
//! they cannot.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::json;
use sluice::api::Rollout;

use crate::support::namespace;
use crate::world::{World, canary, create, get, rollout, write_status};

fn images(rollout: &Rollout) -> Vec<(String, String)> {
    let pod = rollout.spec.workload.kubernetes.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect()
}

fn ecs_rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "checkout"},
        "spec": {
            "workload": {"ecs": {"cluster": "prod", "service": "checkout", "taskDefinition": "checkout", "desiredCount": 4,
                "loadBalancer": {"containerName": "checkout", "containerPort": 8080}}},
            "traffic": {"alb": {
                "listenerArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/1/2",
                "stableTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/blue/1",
                "canaryTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/green/2"}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}]}}
        }
    }))
    .unwrap()
}

register_test!(80, pause_resume_and_restart_write_the_spec);
pub async fn pause_resume_and_restart_write_the_spec(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-pause").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;

    let paused = w.plugin_in(&ns, &["pause", "web"]);
    paused.assert_code(0, "pause");
    assert_eq!(paused.stdout, format!("rollout {ns}/web: paused\n"));
    assert!(get(&client, &ns, "web").await.spec.paused);
    let again = w.plugin_in(&ns, &["pause", "web"]);
    again.assert_code(0, "pause of a paused rollout");
    assert!(again.stdout.contains("already paused"), "{}", again.stdout);

    w.plugin_in(&ns, &["resume", "web"]).assert_code(0, "resume");
    let resumed = get(&client, &ns, "web").await;
    assert!(!resumed.spec.paused);
    assert_eq!(resumed.metadata.generation, Some(3), "pause and resume each changed the spec once");

    let before = Timestamp::now().round(jiff::Unit::Second).unwrap() - jiff::SignedDuration::from_secs(1);
    let restarted = w.plugin_in(&ns, &["restart", "web"]);
    restarted.assert_code(0, "restart");
    assert!(restarted.stdout.starts_with(&format!("rollout {ns}/web: restart requested at ")), "{}", restarted.stdout);
    let at = get(&client, &ns, "web").await.spec.restart_at.expect("restartAt written").0;
    assert!(at >= before && at <= Timestamp::now(), "restartAt {at} is the time of the command");
}

register_test!(90, set_image_changes_the_named_containers_only);
pub async fn set_image_changes_the_named_containers_only(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-image").await;
    create(&client, &ns, &rollout("web", "web:1", 2, canary())).await;
    let before = sluice::engine::revision::of(&get(&client, &ns, "web").await.spec.workload);

    let set = w.plugin_in(&ns, &["set", "image", "web", "web=registry.example.com/web:2"]);
    set.assert_code(0, "set image");
    let changed = get(&client, &ns, "web").await;
    assert_eq!(images(&changed), [("web".into(), "registry.example.com/web:2".into()), ("log".into(), "fluent:1".into())]);
    let after = sluice::engine::revision::of(&changed.spec.workload);
    assert_eq!(set.stdout, format!("rollout {ns}/web: image set: web=registry.example.com/web:2 (revision {before} -> {after})\n"));
    let ports = changed.spec.workload.kubernetes.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].ports.clone();
    assert_eq!(ports.unwrap()[0].container_port, 8080, "the rest of the container is kept");

    let wrong = w.plugin_in(&ns, &["set", "image", "web", "api=api:2"]);
    wrong.assert_code(1, "set image of a container that does not exist");
    assert!(wrong.stderr.contains("no container named api in the pod template (containers: web, log)"), "{}", wrong.stderr);
    assert_eq!(get(&client, &ns, "web").await.metadata.generation, changed.metadata.generation, "nothing was written");

    create(&client, &ns, &ecs_rollout()).await;
    let ecs = w.plugin_in(&ns, &["set", "image", "checkout", "checkout=checkout:2"]);
    ecs.assert_code(1, "set image of an ECS rollout");
    assert!(ecs.stderr.contains("is an ECS workload"), "{}", ecs.stderr);
}

register_test!(100, undo_explains_what_it_cannot_do);
pub async fn undo_explains_what_it_cannot_do(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-undo").await;
    create(&client, &ns, &rollout("web", "web:2", 2, canary())).await;
    let unknown = w.plugin_in(&ns, &["undo", "web", "--to-revision", "0123456789"]);
    unknown.assert_code(1, "undo to a revision without a ReplicaSet");
    assert!(unknown.stderr.contains("no ReplicaSet of revision 0123456789 is left (revisions kept: none)"), "{}", unknown.stderr);
    let first = w.plugin_in(&ns, &["undo", "web"]);
    first.assert_code(1, "undo with no earlier revision");
    assert!(first.stderr.contains("no earlier revision"), "{}", first.stderr);

    create(&client, &ns, &ecs_rollout()).await;
    write_status(&client, &ns, "checkout", json!({"stableRevision": "a1b2c3d4e5", "updateRevision": "f6e5d4c3b2"})).await;
    let ecs = w.plugin_in(&ns, &["undo", "checkout"]);
    ecs.assert_code(1, "undo of an ECS rollout whose earlier task definition cannot be found");
    assert!(ecs.stderr.contains("the task definition of revision a1b2c3d4e5 is not recorded"), "{}", ecs.stderr);

    // When the earlier revision is another task definition of the same family, it is found.
    let mut versioned = ecs_rollout();
    versioned.metadata.name = Some("payments".into());
    versioned.spec.workload.ecs.as_mut().unwrap().task_definition = "payments:3".into();
    let mut earlier = versioned.spec.workload.clone();
    earlier.ecs.as_mut().unwrap().task_definition = "payments:2".into();
    let stable = sluice::engine::revision::of(&earlier);
    create(&client, &ns, &versioned).await;
    write_status(&client, &ns, "payments", json!({"stableRevision": stable, "updateRevision": "f6e5d4c3b2"})).await;
    let undone = w.plugin_in(&ns, &["undo", "payments"]);
    undone.assert_code(0, "undo of an ECS rollout");
    assert_eq!(undone.stdout, format!("rollout {ns}/payments: spec returned to revision {stable} (task definition payments:2)\n"));
    let spec = get(&client, &ns, "payments").await.spec;
    assert_eq!(spec.workload.ecs.unwrap().task_definition, "payments:2");
}
