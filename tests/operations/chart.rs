//! The chart rendered with helm: what its values refuse, what it renders, and that the API
//! server accepts what it renders (server-side dry run).

use std::process::Output;
use std::sync::Arc;

use serde_json::Value;

use crate::support::{Stack, path_str, repo};

fn helm(stack: &Stack, args: &[&str]) -> Output {
    stack.command("helm").args(args).output().expect("helm runs")
}

/// `helm template` of the chart with `--set` values; panics with helm's message when it fails.
fn render(stack: &Stack, sets: &[&str]) -> Vec<Value> {
    let out = template(stack, sets);
    assert!(out.status.success(), "helm template {sets:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("helm renders YAML")
}

fn template(stack: &Stack, sets: &[&str]) -> Output {
    let chart = repo().join("charts/sluice");
    let mut args = vec!["template", "sluice", path_str(&chart), "--namespace", "sluice-system"];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(stack, &args)
}

fn kind<'a>(documents: &'a [Value], kind: &str) -> Option<&'a Value> {
    documents.iter().find(|d| d["kind"] == kind)
}

/// The API server validates and accepts these objects, without storing them.
fn server_accepts(stack: &Stack, documents: &[Value]) {
    // Namespaced objects are checked in an existing namespace (created once, left for reuse).
    let _ = stack.kubectl(&["create", "namespace", "sluice-system"]);
    // A stream of documents, as `helm template | kubectl apply -f -` sends them. (kubectl's
    // client-side validation of a `List` refuses the `null` in the CRDs' enums of optional
    // fields, which the API server and the same objects as documents accept.)
    let stream: String = documents.iter().map(|d| format!("---\n{}", serde_saphyr::to_string(d).expect("YAML"))).collect();
    let mut child = stack
        .command("kubectl")
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the API server refuses the chart's objects: {}", String::from_utf8_lossy(&out.stderr));
}

register_test!(10, defaults_lint_and_log_json);
pub async fn defaults_lint_and_log_json(stack: Arc<Stack>) {
    let lint = helm(&stack, &["lint", path_str(&repo().join("charts/sluice"))]);
    assert!(lint.status.success(), "helm lint: {}", String::from_utf8_lossy(&lint.stdout));
    let documents = render(&stack, &[]);
    let deployment = kind(&documents, "Deployment").expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args, &serde_json::json!(["controller", "--log-format", "json"]), "the chart logs JSON by default");
    assert!(kind(&documents, "NetworkPolicy").is_none(), "the NetworkPolicy is off by default");
    let text = render(&stack, &["logFormat=text"]);
    assert_eq!(kind(&text, "Deployment").unwrap()["spec"]["template"]["spec"]["containers"][0]["args"][2], "text");
    let bad = template(&stack, &["logFormat=yaml"]);
    assert!(!bad.status.success(), "values.schema.json refuses a log format the controller does not know");
    server_accepts(&stack, &documents);
}

register_test!(20, several_replicas_without_leader_election_are_refused);
pub async fn several_replicas_without_leader_election_are_refused(stack: Arc<Stack>) {
    let refused = template(&stack, &["replicas=2", "leaderElection.enabled=false"]);
    assert!(!refused.status.success(), "two replicas without leader election would both act on every Rollout");
    let message = String::from_utf8_lossy(&refused.stderr);
    println!("    {}", message.trim().replace('\n', "\n    "));
    assert!(message.contains("/leaderElection/enabled") && message.contains("/replicas"), "the message names both ways out: {message}");
    for allowed in [&["replicas=1", "leaderElection.enabled=false"][..], &["replicas=3", "leaderElection.enabled=true"], &["replicas=0"]] {
        let out = template(&stack, allowed);
        assert!(out.status.success(), "helm template {allowed:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

register_test!(30, network_policy_allows_only_what_the_controller_needs);
pub async fn network_policy_allows_only_what_the_controller_needs(stack: Arc<Stack>) {
    let documents = render(&stack, &["networkPolicy.enabled=true", "metrics.port=9100"]);
    let policy = kind(&documents, "NetworkPolicy").expect("a NetworkPolicy");
    let spec = &policy["spec"];
    assert_eq!(spec["podSelector"]["matchLabels"], kind(&documents, "Deployment").unwrap()["spec"]["selector"]["matchLabels"]);
    assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert_eq!(spec["ingress"], serde_json::json!([{"ports": [{"port": 9100, "protocol": "TCP"}]}]), "in: the metrics port only");
    let egress = spec["egress"].as_array().unwrap();
    let ports = |rule: &Value| -> Vec<(i64, String)> {
        rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["port"].as_i64().unwrap(), p["protocol"].as_str().unwrap().to_string()))
            .collect()
    };
    let all: Vec<Vec<(i64, String)>> = egress.iter().map(ports).collect();
    let tcp = |port: i64| (port, "TCP".to_string());
    assert_eq!(
        all,
        vec![vec![(53, "UDP".to_string()), tcp(53)], vec![tcp(443), tcp(6443)], vec![tcp(443)], vec![tcp(9090)]],
        "out: DNS, the API server, HTTPS, Prometheus"
    );
    assert_eq!(egress[2]["to"], serde_json::json!([{"ipBlock": {"cidr": "0.0.0.0/0"}}]));
    server_accepts(&stack, &documents);

    let narrowed = render(
        &stack,
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.egress.apiServer.cidrs={10.0.0.0/28}",
            "networkPolicy.egress.apiServer.ports={443}",
            "networkPolicy.egress.metricProviders=null",
        ],
    );
    let egress = kind(&narrowed, "NetworkPolicy").unwrap()["spec"]["egress"].as_array().unwrap().clone();
    assert_eq!(egress.len(), 3, "no metric provider rule once it is emptied");
    assert_eq!(egress[1]["to"], serde_json::json!([{"ipBlock": {"cidr": "10.0.0.0/28"}}]));
    assert_eq!(ports(&egress[1]), vec![tcp(443)]);
    server_accepts(&stack, &narrowed);
}

register_test!(40, notes_say_how_to_check_start_and_uninstall);
pub async fn notes_say_how_to_check_start_and_uninstall(stack: Arc<Stack>) {
    let chart = repo().join("charts/sluice");
    // A server dry run renders the notes against the real API server and installs nothing.
    let out = helm(
        &stack,
        &["install", "sluice-notes", path_str(&chart), "--namespace", "sluice-notes", "--dry-run=server", "--set", "replicas=0"],
    );
    assert!(out.status.success(), "helm install --dry-run: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let notes = &text[text.find("NOTES:").expect("helm prints the chart's notes")..];
    for expected in [
        "kubectl -n sluice-notes rollout status deployment/sluice-notes-controller",
        "kubectl -n sluice-notes get lease sluice-controller",
        "kubectl apply -f examples/first-rollout.yaml",
        "kubectl krew install --manifest=sluice.yaml",
        "cargo install --locked --git https://github.com/sluice-dev/sluice --bin kubectl-sluice sluice",
        "kubectl sluice status <rollout> -n <namespace> --watch",
        "kubectl delete rollouts.sluice.dev --all -A",
    ] {
        assert!(notes.contains(expected), "the notes say {expected:?}:\n{notes}");
    }
    assert!(!notes.contains("Argo Rollouts is installed"), "no warning without Argo Rollouts:\n{notes}");

    // Beside Argo Rollouts' CRD (its kind is also Rollout, plural rollouts), the notes say how to
    // name Sluice's.
    let argo_crd = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollouts.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"kind": "Rollout", "plural": "rollouts", "singular": "rollout", "shortNames": ["ro"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;
    stack.apply(argo_crd);
    let out = crate::support::wait_for("helm to see Argo's Rollout API", std::time::Duration::from_secs(30), || async {
        let out = helm(
            &stack,
            &["install", "sluice-notes", path_str(&chart), "--namespace", "sluice-notes", "--dry-run=server", "--set", "replicas=0"],
        );
        String::from_utf8_lossy(&out.stdout).contains("Argo Rollouts is installed").then_some(out)
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kubectl get rollouts.sluice.dev") && text.contains("kubectl get sro"), "{text}");
    let removed = stack.kubectl(&["delete", "crd", "rollouts.argoproj.io", "--wait=true"]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
}
