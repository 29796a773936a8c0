use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use sluice::api::Rollout;

use crate::support::{Stack, namespace, path_str, repo, wait_for};

register_test!(10, replica_set_gets_ready_pods);
pub async fn replica_set_gets_ready_pods(stack: Arc<Stack>) {
    let client = stack.kube().await;
    let ns = namespace(&client, "replicaset").await;
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &rs).await.expect("ReplicaSet created");
    wait_for("3 ready replicas", Duration::from_secs(60), || async {
        let rs = api.get("web").await.ok()?;
        (rs.status?.ready_replicas? == 3).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let ready = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count();
    assert_eq!(ready, 3, "pods Ready");
}

fn example_rollout(ns: &str) -> Rollout {
    let text = std::fs::read_to_string(repo().join("examples/canary.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let document = docs.into_iter().find(|d| d["kind"] == "Rollout").expect("the example holds a Rollout");
    let mut rollout: Rollout = serde_json::from_value(document).unwrap();
    rollout.metadata.namespace = Some(ns.into());
    rollout
}

register_test!(20, crds_apply_client_side_and_refuse_bad_rollouts);
pub async fn crds_apply_client_side_and_refuse_bad_rollouts(stack: Arc<Stack>) {
    let crds = repo().join("crds");
    let applied = stack.kubectl(&["apply", "-f", path_str(&crds)]);
    assert!(applied.status.success(), "kubectl apply -f crds/ failed: {}", String::from_utf8_lossy(&applied.stderr));
    let client = stack.kube().await;
    // `kubectl wait` errs on a CRD whose status has no conditions yet, so poll instead.
    let crds_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["rollouts", "analysistemplates", "clusteranalysistemplates", "analysisruns"] {
        let name = format!("{name}.sluice.dev");
        wait_for(&format!("{name} Established"), Duration::from_secs(60), || async {
            let crd = crds_api.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        })
        .await;
    }

    let ns = namespace(&client, "crds").await;
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let rollout = example_rollout(&ns);
    // Discovery of a just-established CRD can lag; retry the first create briefly.
    let created =
        wait_for("the Rollout to be stored", Duration::from_secs(30), || async { api.create(&PostParams::default(), &rollout).await.ok() })
            .await;
    let read = api.get("checkout").await.expect("Rollout read back");
    assert_eq!(read.spec, rollout.spec, "the stored spec is the applied spec");
    assert_eq!(created.metadata.uid, read.metadata.uid);

    let refused = |mutate: fn(&mut serde_json::Value)| {
        let api = api.clone();
        let mut value = serde_json::to_value(example_rollout(&ns)).unwrap();
        value["metadata"]["name"] = json!("bad");
        mutate(&mut value);
        async move {
            let rollout: Rollout = match serde_json::from_value(value.clone()) {
                Ok(r) => r,
                Err(_) => return create_raw(&api, value).await,
            };
            match api.create(&PostParams::default(), &rollout).await {
                Ok(_) => panic!("the API server accepted an invalid Rollout"),
                Err(e) => e.to_string(),
            }
        }
    };
    let weight = refused(|v| v["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = json!(150)).await;
    assert!(weight.contains("setWeight is a percentage: use a value from 0 to 100"), "{weight}");
    let strategies = refused(|v| v["spec"]["strategy"]["rolling"] = json!({"maxSurge": 1})).await;
    assert!(strategies.contains("set exactly one of strategy.canary, strategy.blueGreen or strategy.rolling"), "{strategies}");
    let workload = refused(|v| {
        v["spec"].as_object_mut().unwrap().remove("workload");
    })
    .await;
    assert!(workload.contains("spec.workload: Required value"), "{workload}");

    // What a person sees from client-side apply.
    let manifest = std::env::temp_dir().join(format!("sluice-bad-{}.yaml", std::process::id()));
    let mut bad = serde_json::to_value(example_rollout(&ns)).unwrap();
    bad["metadata"]["name"] = json!("bad-apply");
    bad["spec"]["strategy"]["canary"]["steps"][1] = json!({"setWeight": 10, "pause": {}});
    std::fs::write(&manifest, serde_json::to_string(&bad).unwrap()).unwrap();
    let output = stack.kubectl(&["apply", "-f", path_str(&manifest)]);
    let _ = std::fs::remove_file(&manifest);
    assert!(!output.status.success(), "kubectl apply accepted a step with two actions");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("each canary step sets exactly one of setWeight, pause, analysis, setCanaryScale or setHeaderRoute"),
        "{stderr}"
    );
}

/// Creates an object the Rust types cannot even represent (a missing required field).
async fn create_raw(api: &Api<Rollout>, value: serde_json::Value) -> String {
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        api.clone().into_client(),
        value["metadata"]["namespace"].as_str().unwrap(),
        &kube::api::ApiResource::erase::<Rollout>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(value).unwrap();
    match dynamic.create(&PostParams::default(), &object).await {
        Ok(_) => panic!("the API server accepted an invalid Rollout"),
        Err(e) => e.to_string(),
    }
}
