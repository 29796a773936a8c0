//! The chart on the real node: its controller pods start from the image, elect a leader, turn
//! ready only once their watches have synced, hand over when the leader goes, and leave only the
//! CRDs behind when uninstalled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use crate::support::{path_str, repo, wait_for};
use crate::{Cluster, RELEASE, RELEASE_NAMESPACE, ready};

const LEASE: &str = "sluice-controller";
const SELECTOR: &str = "app.kubernetes.io/name=sluice";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity
}

async fn controller_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(SELECTOR)).await.expect("pods listed").items
}

// First: the others run on the chart it installs.
register_test!(10, the_chart_runs_the_image_and_elects_a_leader);
pub async fn the_chart_runs_the_image_and_elects_a_leader(cluster: Arc<Cluster>) {
    let chart = repo().join("charts/sluice");
    let endpoint = cluster.stack.url_for_pods(&cluster.stack.aws_endpoint);
    // Only the image and the AWS endpoint differ from the chart's defaults.
    let installed = cluster.helm(&[
        "install",
        RELEASE,
        path_str(&chart),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        "image.repository=sluice.local/sluice",
        "--set",
        "image.tag=dev",
        "--set",
        &format!("aws.endpointUrl={endpoint}"),
    ]);
    assert!(installed.status.success(), "helm install failed: {}", String::from_utf8_lossy(&installed.stderr));

    let client = cluster.stack.kube().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let running = wait_for("both controller pods Ready on the real node", Duration::from_secs(120), || async {
        let list = controller_pods(&pods).await;
        (list.len() == 2 && list.iter().all(ready)).then_some(list)
    })
    .await;
    for pod in &running {
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("sluice-real-0"), "a controller pod on a fake node");
        let status = pod.status.as_ref().expect("status");
        let container = &status.container_statuses.as_ref().expect("container statuses")[0];
        assert!(container.image.contains("sluice.local/sluice:dev"), "image {}", container.image);
        assert_eq!(container.restart_count, 0, "{} restarted", pod.metadata.name.as_deref().unwrap_or_default());
    }

    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let leader = wait_for("a leader", Duration::from_secs(60), || async { holder(&leases).await }).await;
    let names: Vec<String> = running.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert!(names.contains(&leader), "the Lease is held by {leader}, not by a controller pod ({names:?})");

    // The leader answers /readyz "ready" once its watch caches have synced (it logs when); the
    // other replica is ready as a standby. Read from this host through the pod network.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("client");
    for pod in &running {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP");
        let expected = if name == leader { "ready" } else { "standby" };
        let answer = wait_for(&format!("{name} /readyz to say {expected}"), Duration::from_secs(60), || async {
            let body = http.get(format!("http://{ip}:8080/readyz")).send().await.ok()?.text().await.ok()?;
            (body == expected).then_some(body)
        })
        .await;
        assert_eq!(answer, expected);
        let logs = cluster.stack.kubectl(&["logs", "-n", RELEASE_NAMESPACE, &name]);
        assert!(logs.status.success(), "kubectl logs {name}: {}", String::from_utf8_lossy(&logs.stderr));
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(!text.contains('\u{1b}'), "{name} logged ANSI colour codes");
        let synced = text.lines().position(|l| l.contains("watch caches synced"));
        let leading = text.lines().position(|l| l.contains("\"leading\""));
        if name == leader {
            assert!(leading.is_some() && synced > leading, "{name} leads, so it syncs its watches after taking the Lease:\n{text}");
        } else {
            assert!(synced.is_none(), "{name} synced watches as a standby:\n{text}");
        }
    }
}

register_test!(50, deleting_the_leader_pod_hands_over_within_the_lease);
pub async fn deleting_the_leader_pod_hands_over_within_the_lease(cluster: Arc<Cluster>) {
    let client = cluster.stack.kube().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let leader = wait_for("a leader", Duration::from_secs(60), || async { holder(&leases).await }).await;
    let deleted = Instant::now();
    pods.delete(&leader, &DeleteParams::default()).await.expect("leader pod deleted");
    let successor = wait_for("another controller pod to take the Lease", Duration::from_secs(45), || async {
        holder(&leases).await.filter(|h| *h != leader)
    })
    .await;
    let handover = deleted.elapsed();
    eprintln!("leadership went from {leader} to {successor} in {:.1}s", handover.as_secs_f64());
    // The Lease lasts 15 s after its last renewal; a graceful stop may release it sooner.
    assert!(handover < Duration::from_secs(25), "handover took {handover:?}");
    let names: Vec<String> = controller_pods(&pods).await.into_iter().filter_map(|p| p.metadata.name).collect();
    assert!(names.contains(&successor), "{successor} is not a controller pod ({names:?})");
    // The Deployment replaces the deleted pod.
    wait_for("two controller pods Ready again", Duration::from_secs(90), || async {
        let list = controller_pods(&pods).await;
        (list.len() == 2 && list.iter().all(ready)).then_some(())
    })
    .await;
}

// Last: it removes what the others need.
register_test!(60, uninstall_removes_everything_but_the_crds);
pub async fn uninstall_removes_everything_but_the_crds(cluster: Arc<Cluster>) {
    let uninstalled = cluster.helm(&["uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", "90s"]);
    assert!(uninstalled.status.success(), "helm uninstall failed: {}", String::from_utf8_lossy(&uninstalled.stderr));
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    for kind in [
        "deployments,services,serviceaccounts,roles,rolebindings,configmaps,poddisruptionbudgets,networkpolicies",
        "clusterroles,clusterrolebindings",
    ] {
        let left = cluster.stack.kubectl(&["get", kind, "-A", "-l", &selector, "-o", "name"]);
        assert!(left.status.success(), "kubectl get {kind}: {}", String::from_utf8_lossy(&left.stderr));
        assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "left after uninstall");
    }
    let client = cluster.stack.kube().await;
    let pods: Api<Pod> = Api::namespaced(client, RELEASE_NAMESPACE);
    wait_for("the controller pods gone", Duration::from_secs(60), || async { controller_pods(&pods).await.is_empty().then_some(()) }).await;
    for crd in ["rollouts.sluice.dev", "analysistemplates.sluice.dev", "clusteranalysistemplates.sluice.dev", "analysisruns.sluice.dev"] {
        let kept = cluster.stack.kubectl(&["get", "crd", crd]);
        assert!(kept.status.success(), "the CRD {crd} went with the release: {}", String::from_utf8_lossy(&kept.stderr));
    }
}

register_test!(40, upgrade_to_a_chart_with_a_changed_crd_field_applies_it);
/// A chart whose Rollout CRD gained a field: `helm upgrade` applies it (the CRDs are templates,
/// not `crds/`, which Helm never upgrades), the field is kept on a Rollout, and the controller
/// comes back Ready.
pub async fn upgrade_to_a_chart_with_a_changed_crd_field_applies_it(cluster: Arc<Cluster>) {
    let chart = tempfile_dir("sluice-chart");
    copy_dir(&repo().join("charts/sluice"), &chart);
    let crd_path = chart.join("files/crds/rollouts.yaml");
    let mut crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&crd_path).expect("CRD read")).expect("CRD parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeProbe"] =
        serde_json::json!({"type": "string", "description": "A field only the upgraded chart knows."});
    std::fs::write(&crd_path, serde_saphyr::to_string(&crd).expect("CRD serializes")).expect("CRD written");

    let upgraded = cluster.helm(&[
        "upgrade",
        RELEASE,
        path_str(&chart),
        "--namespace",
        RELEASE_NAMESPACE,
        "--reuse-values",
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(upgraded.status.success(), "helm upgrade failed: {}", String::from_utf8_lossy(&upgraded.stderr));
    let field = cluster.stack.kubectl(&[
        "get",
        "crd",
        "rollouts.sluice.dev",
        "-o",
        "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.upgradeProbe.type}",
    ]);
    assert_eq!(String::from_utf8_lossy(&field.stdout), "string", "the upgraded CRD is not applied");

    // A Rollout written with the new field keeps it: the API server no longer prunes it.
    let client = cluster.stack.kube().await;
    let ns = crate::support::namespace(&client, "upgraded").await;
    cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: probe, namespace: {ns}}}\nspec:\n  upgradeProbe: kept\n  workload:\n    kubernetes:\n      replicas: 0\n      selector: {{matchLabels: {{app: probe}}}}\n      template:\n        metadata: {{labels: {{app: probe}}}}\n        spec: {{containers: [{{name: probe, image: sluice.local/demo-app:dev}}]}}\n  strategy: {{rolling: {{}}}}\n"
    ));
    let kept = cluster.stack.kubectl(&["get", "rollout", "probe", "-n", &ns, "-o", "jsonpath={.spec.upgradeProbe}"]);
    assert_eq!(String::from_utf8_lossy(&kept.stdout), "kept");

    let pods: Api<Pod> = Api::namespaced(client, RELEASE_NAMESPACE);
    wait_for("the controller pods Ready after the upgrade", Duration::from_secs(120), || async {
        let list = controller_pods(&pods).await;
        (list.len() == 2 && list.iter().all(ready)).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&chart);
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("dir created");
    for entry in std::fs::read_dir(from).expect("dir read") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("file copied");
        }
    }
}

register_test!(70, upgrade_from_the_previous_chart_version_keeps_rollouts_and_applies_the_new_crds);
/// A release of the previous chart version (0.1.0, packaged in tests/fixtures/charts) upgraded
/// to this one: the new CRDs are applied, the controller comes up Ready and leading, and a
/// Rollout written under the old CRDs runs. The previous version's image is not built here, so
/// that release runs no controller replicas; this build's controller must not run against the
/// old CRDs either (it says so: see `older_crd`).
pub async fn upgrade_from_the_previous_chart_version_keeps_rollouts_and_applies_the_new_crds(cluster: Arc<Cluster>) {
    let previous = repo().join("tests/fixtures/charts/sluice-0.1.0.tgz");
    let endpoint = cluster.stack.url_for_pods(&cluster.stack.aws_endpoint);
    let values = [
        "--set".to_string(),
        "image.repository=sluice.local/sluice".to_string(),
        "--set".to_string(),
        "image.tag=dev".to_string(),
        "--set".to_string(),
        format!("aws.endpointUrl={endpoint}"),
    ];
    let upgrade = |chart: &std::path::Path| {
        let mut args = vec!["upgrade", RELEASE, path_str(chart), "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", "180s"];
        args.extend(values.iter().map(String::as_str));
        let output = cluster.helm(&args);
        assert!(output.status.success(), "helm upgrade to {}: {}", chart.display(), String::from_utf8_lossy(&output.stderr));
    };
    let output = cluster.helm(&[
        "install",
        RELEASE,
        path_str(&previous),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        "replicas=0",
        "--wait",
    ]);
    assert!(output.status.success(), "helm install of the previous chart: {}", String::from_utf8_lossy(&output.stderr));
    let weight_in_schema = || {
        let field = cluster.stack.kubectl(&[
            "get",
            "crd",
            "rollouts.sluice.dev",
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.status.properties.weight.type}",
        ]);
        String::from_utf8_lossy(&field.stdout).into_owned()
    };
    assert_eq!(weight_in_schema(), "", "the previous chart's CRD has no status.weight");

    let client = cluster.stack.kube().await;
    let ns = crate::support::namespace(&client, "chart-upgrade").await;
    cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: kept, namespace: {ns}}}\nspec:\n  workload:\n    kubernetes:\n      replicas: 1\n      selector: {{matchLabels: {{app: kept}}}}\n      template:\n        metadata: {{labels: {{app: kept}}}}\n        spec: {{containers: [{{name: kept, image: sluice.local/demo-app:dev, imagePullPolicy: Never}}]}}\n  strategy: {{rolling: {{}}}}\n"
    ));
    let rollouts: Api<sluice::api::Rollout> = Api::namespaced(client.clone(), &ns);
    let healthy = |what: &'static str| {
        let rollouts = rollouts.clone();
        async move {
            wait_for(what, Duration::from_secs(120), || async {
                let rollout = rollouts.get("kept").await.ok()?;
                let status = rollout.status?;
                (status.phase == Some(sluice::api::RolloutPhase::Healthy)).then_some(status)
            })
            .await
        }
    };
    assert!(rollouts.get("kept").await.expect("kept by the previous CRD").status.is_none(), "no controller ran yet");

    upgrade(&repo().join("charts/sluice"));
    assert_eq!(weight_in_schema(), "string", "the upgrade applies the new CRD");
    let history = cluster.helm(&["history", RELEASE, "--namespace", RELEASE_NAMESPACE, "-o", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).expect("helm history");
    let charts: Vec<&str> = history.as_array().expect("revisions").iter().filter_map(|r| r["chart"].as_str()).collect();
    assert_eq!(charts.first(), Some(&"sluice-0.1.0"), "{history}");
    assert_ne!(charts.last(), Some(&"sluice-0.1.0"), "upgraded to this chart version: {history}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    wait_for("the controller pods Ready after the upgrade", Duration::from_secs(120), || async {
        let list = controller_pods(&pods).await;
        (list.len() == 2 && list.iter().all(ready)).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    wait_for("a leader after the upgrade", Duration::from_secs(60), || async { holder(&leases).await }).await;
    let after = healthy("the Rollout Healthy after the upgrade").await;
    assert!(after.weight.is_some(), "the status field only the new CRD declares is kept: {after:?}");
}
