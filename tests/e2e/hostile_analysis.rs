//! What a hostile author of analysis templates can make the controller do, through real
//! Rollouts: a condition that never ends, an endless answer, a request to the instance metadata
//! address, a header from a Secret nobody offered, an AnalysisRun the types cannot read. Each
//! ends its own analysis with a clear reason and aborts its own Rollout; the controller keeps
//! answering /healthz and another Rollout, in another namespace, canaries to Healthy beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate, Rollout, RolloutPhase};

use crate::controller::{Harness, RELEASE_NAMESPACE};
use crate::scenarios::rollout;
use crate::support::scene::{DEADLINE, Scene};
use crate::support::wait_for;

/// Numbers in the answer the quadratic condition scans: 20,000 of them (about 130 KB), so that
/// `x + 0.5 in result` for each is 400 million comparisons: seconds of work, never under 100 ms
/// (25 million, with 5,000, ran in under 100 ms on an idle optimised build).
const NUMBERS: usize = 20_000;
/// Within every bound the checks place on a condition (short, one comprehension), yet quadratic
/// in `result`: `in` scans the whole list for each element.
const QUADRATIC: &str = "result.all(x, !(x + 0.5 in result))";
/// The answer larger than a web metric may read (1 MiB).
const HUGE: usize = 4 << 20;
const TOKEN: &str = "Bearer s3cret-from-the-offered-secret";

/// A metric provider on loopback: `/ok` answers 1, `/numbers` a long list, `/huge` 4 MiB,
/// `/secure` 1 to the right Authorization header (recorded) and 403 to anything else.
struct Provider {
    base: String,
    hits: Arc<AtomicUsize>,
    authorizations: Arc<std::sync::Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start() -> Provider {
        let hits = Arc::new(AtomicUsize::new(0));
        let authorizations: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let numbers: Arc<String> = Arc::new(serde_json::to_string(&(0..NUMBERS).map(|i| i as f64).collect::<Vec<_>>()).unwrap());
        let (counted, recorded) = (hits.clone(), authorizations.clone());
        let app = Router::new()
            .route("/ok", get(|| async { "1" }))
            .route("/numbers", get(move || async move { (*numbers).clone() }))
            .route("/huge", get(|| async { "1".repeat(HUGE) }))
            .route(
                "/secure",
                get(move |headers: HeaderMap| async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    if let Some(value) = &authorization {
                        recorded.lock().unwrap().push(value.clone());
                    }
                    match authorization.as_deref() {
                        Some(TOKEN) => "1".into_response(),
                        _ => StatusCode::FORBIDDEN.into_response(),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider { base, hits, authorizations, server }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A one-measurement web metric whose first error ends the run (consecutiveErrorLimit 0).
fn web_metric(name: &str, url: &str, condition: &str) -> Value {
    json!({"name": name, "count": 1, "consecutiveErrorLimit": 0, "successCondition": condition,
        "provider": {"web": {"url": url, "timeout": "10s"}}})
}

async fn template(s: &Scene, name: &str, metrics: Value) {
    let api: Api<AnalysisTemplate> = Api::namespaced(s.client.clone(), &s.ns);
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
        "spec": {"metrics": metrics}
    }))
    .unwrap();
    api.create(&PostParams::default(), &template).await.expect("template created");
}

/// A canary at 50 % whose second step is the analysis of `template`.
fn analysed(template: &str) -> Rollout {
    rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
            "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": template}]}}]}}),
    )
}

/// The runs of a scene's Rollout (by label: a run the types cannot read may be beside them).
async fn runs(s: &Scene) -> Vec<AnalysisRun> {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items
}

fn message(rollout: &Rollout) -> String {
    rollout.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
}

/// Polls /healthz every 100 ms until stopped; returns (answers, failures, slowest answer).
struct HealthProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>, Duration)>,
}

impl HealthProbe {
    fn start(port: u16) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
            let (mut answers, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
                    Ok(response) if response.status().is_success() => answers += 1,
                    Ok(response) => failures.push(response.status().to_string()),
                    Err(error) => failures.push(error.to_string()),
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (answers, failures, slowest)
        });
        HealthProbe { stop, task }
    }

    async fn finish(self) -> (usize, Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A Rollout whose analysis is `hostile` (its template's metrics), and beside it, in another
/// namespace, a Rollout whose analysis measures good numbers; both move to web:2 at once. The
/// hostile one must abort back to web:1 and the other be promoted to web:2, while /healthz keeps
/// answering. Returns the aborted Rollout and its failed run.
async fn beside_a_good_rollout(h: &Harness, provider: &Provider, prefix: &str, hostile: Value) -> (Rollout, AnalysisRun) {
    let services = ["web-stable", "web-canary"];
    let beside = format!("{prefix}-beside");
    let (bad, good) = tokio::join!(Scene::new(&h.stack, prefix, &services), Scene::new(&h.stack, &beside, &services));
    template(&bad, "hostile", hostile).await;
    template(&good, "healthy", json!([web_metric("healthy", &format!("{}/ok", provider.base), "result == 1.0")])).await;
    bad.create(&analysed("hostile")).await;
    good.create(&analysed("healthy")).await;
    tokio::join!(bad.wait_phase(RolloutPhase::Healthy), good.wait_phase(RolloutPhase::Healthy));

    let probe = HealthProbe::start(h.metrics_port("main").expect("the controller runs"));
    tokio::join!(bad.set_image("web:2"), good.set_image("web:2"));
    let (degraded, _) = tokio::join!(bad.wait_phase(RolloutPhase::Degraded), async {
        good.wait_phase(RolloutPhase::Healthy).await;
        good.wait_replicas(&[("web:2", 2)]).await;
    });
    bad.wait_replicas(&[("web:1", 2)]).await;
    let (answers, failures, slowest) = probe.finish().await;
    assert!(failures.is_empty(), "/healthz answered every probe: {failures:?}");
    assert!(answers > 0 && slowest < Duration::from_secs(2), "/healthz answered {answers} probes, the slowest in {slowest:?}");

    let good_runs = runs(&good).await;
    assert!(good_runs.iter().any(|r| r.status.as_ref().is_some_and(|s| s.phase == AnalysisPhase::Successful)), "{good_runs:?}");
    let failed = runs(&bad).await.into_iter().find(|r| r.status.as_ref().is_some_and(|s| s.phase.is_completed()));
    (degraded, failed.expect("the hostile run ended"))
}

/// The message of each measurement of a run, by metric.
fn measurement_messages(run: &AnalysisRun) -> Vec<(String, String)> {
    let results = run.status.as_ref().map(|s| s.metric_results.clone()).unwrap_or_default();
    results.iter().flat_map(|r| r.measurements.iter().map(move |m| (r.name.clone(), m.message.clone().unwrap_or_default()))).collect()
}

register_test!(280, a_condition_that_never_ends_aborts_only_its_rollout);
/// A condition within every bound that would run for seconds: the 100 ms deadline ends the
/// measurement in Error, the run and the Rollout say why.
pub async fn a_condition_that_never_ends_aborts_only_its_rollout(h: Arc<Harness>) {
    let provider = Provider::start().await;
    let bomb = web_metric("bomb", &format!("{}/numbers", provider.base), QUADRATIC);
    let (degraded, run) = beside_a_good_rollout(&h, &provider, "celbomb", json!([bomb])).await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, AnalysisPhase::Error, "{status:?}");
    let expected = "conditions were not evaluated within 100ms";
    assert!(measurement_messages(&run).iter().any(|(_, m)| m.contains(expected)), "{:?}", measurement_messages(&run));
    assert!(message(&degraded).contains(expected) && message(&degraded).contains("metric bomb"), "{}", message(&degraded));
}

register_test!(290, an_endless_answer_aborts_only_its_rollout);
/// An answer of 4 MiB is refused as it grows past 1 MiB.
pub async fn an_endless_answer_aborts_only_its_rollout(h: Arc<Harness>) {
    let provider = Provider::start().await;
    let huge = web_metric("huge", &format!("{}/huge", provider.base), "result == 1.0");
    let (degraded, run) = beside_a_good_rollout(&h, &provider, "hugeanswer", json!([huge])).await;
    assert_eq!(run.status.as_ref().unwrap().phase, AnalysisPhase::Error);
    let expected = "answer larger than 1 MiB";
    assert!(measurement_messages(&run).iter().any(|(_, m)| m.contains(expected)), "{:?}", measurement_messages(&run));
    assert!(message(&degraded).contains(expected), "{}", message(&degraded));
    let stored = serde_json::to_string(run.status.as_ref().unwrap()).unwrap().len();
    assert!(stored < 16 * 1024, "nothing of the answer is stored: {stored} bytes of status");
}

register_test!(300, metadata_and_loopback_addresses_are_refused_and_abort_only_their_rollout);
/// The instance metadata address, and a loopback address the cluster's list does not name
/// (the tests' controllers allow 127.0.0.1 and `*`; a wildcard never opens a denied address):
/// refused before anything connects.
pub async fn metadata_and_loopback_addresses_are_refused_and_abort_only_their_rollout(h: Arc<Harness>) {
    let provider = Provider::start().await;
    // A listener on another loopback address, counting every connection made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is a loopback address here");
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let acceptor = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let metrics = json!([
        web_metric("metadata", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "result == 1.0"),
        web_metric("loopback", &format!("http://127.0.0.2:{port}/"), "result == 1.0"),
    ]);
    let (degraded, run) = beside_a_good_rollout(&h, &provider, "denied", metrics).await;
    acceptor.abort();
    assert_eq!(run.status.as_ref().unwrap().phase, AnalysisPhase::Error);
    let messages = measurement_messages(&run);
    let of = |metric: &str| messages.iter().find(|(name, _)| name == metric).map(|(_, m)| m.clone()).unwrap_or_default();
    for (metric, address) in [("metadata", "169.254.169.254"), ("loopback", "127.0.0.2")] {
        let text = of(metric);
        assert!(text.contains("not sent") && text.contains(address) && text.contains("--allow-host"), "{metric}: {text}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing connected to the loopback listener");
    assert!(message(&degraded).contains("not sent"), "{}", message(&degraded));
}

/// Whether the chart's ServiceAccount may `get` the Secret, as the API server's authorizer says.
fn controller_may_read(h: &Harness, ns: &str, secret: &str) -> bool {
    let subject = format!("system:serviceaccount:{RELEASE_NAMESPACE}:sluice-controller");
    let answer = h.stack.kubectl(&["auth", "can-i", "get", &format!("secrets/{secret}"), "-n", ns, "--as", &subject]);
    String::from_utf8_lossy(&answer.stdout).trim() == "yes"
}

register_test!(310, a_secret_header_is_read_only_once_offered);
/// A header from a Secret, through the controller running under the chart's ServiceAccount
/// (which may read no Secret): refused with the Role to create and nothing sent; offered by
/// the namespace owner, a retried rollout reads it and sends it.
pub async fn a_secret_header_is_read_only_once_offered(h: Arc<Harness>) {
    let provider = Provider::start().await;
    let s = Scene::new(&h.stack, "offer", &["web-stable", "web-canary"]).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(s.client.clone(), &s.ns);
    let secret = serde_json::from_value(json!({"metadata": {"name": "web-token"}, "stringData": {"authorization": TOKEN}})).unwrap();
    secrets.create(&PostParams::default(), &secret).await.expect("secret created");
    let mut metric = web_metric("secured", &format!("{}/secure", provider.base), "result == 1.0");
    metric["provider"]["web"]["headers"] =
        json!([{"name": "Authorization", "secretKeyRef": {"name": "web-token", "key": "authorization"}}]);
    template(&s, "secured", json!([metric])).await;
    s.create(&analysed("secured")).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(!controller_may_read(&h, &s.ns, "web-token"), "the chart grants no Secret");

    s.set_image("web:2").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    let text = message(&degraded);
    assert!(
        text.contains("it reads only Secrets offered to it")
            && text.contains(&format!("create in namespace {} a Role", s.ns))
            && text.contains("resourceNames: [web-token]"),
        "the message says which Role to create: {text}"
    );
    s.wait_replicas(&[("web:1", 2)]).await;
    assert_eq!(provider.hits.load(Ordering::SeqCst), 0, "nothing was sent without the Secret");

    // The namespace owner offers this one Secret, by name, as docs/security.md shows.
    let offer = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "offer-web-token"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["web-token"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "offer-web-token"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "offer-web-token"},
            "subjects": [{"kind": "ServiceAccount", "name": "sluice-controller", "namespace": RELEASE_NAMESPACE}]}),
    ];
    for object in offer {
        let resource = match object["kind"].as_str() {
            Some("Role") => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&()),
            _ => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns, &resource);
        api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.expect("offer created");
    }
    wait_for("the offer to take effect", DEADLINE, || async { controller_may_read(&h, &s.ns, "web-token").then_some(()) }).await;
    assert!(!controller_may_read(&h, &s.ns, "other"), "only the offered Secret");

    s.command("retry", "offered-1").await;
    s.wait("the retried rollout to be Healthy on web:2", |r| {
        r.status.as_ref().is_some_and(|st| st.phase == Some(RolloutPhase::Healthy) && st.stable_revision == st.update_revision && !st.abort)
    })
    .await;
    s.wait_replicas(&[("web:2", 2)]).await;
    assert_eq!(provider.authorizations.lock().unwrap().clone(), vec![TOKEN.to_string()], "the offered value was sent, once");
}

/// The AnalysisRun CRD with `spec` left unchecked, or the generated schema back.
async fn loosen_run_schema(h: &Harness, loose: bool) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(h.stack.kube().await);
    let spec = if loose {
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    } else {
        let (_, crd) = sluice::api::crd::all().into_iter().find(|(file, _)| *file == "analysisruns.yaml").unwrap();
        serde_json::to_value(crd).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    };
    let patch = json!([{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec", "value": spec}]);
    crds.patch("analysisruns.sluice.dev", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(patch).unwrap()))
        .await
        .expect("CRD schema replaced");
}

register_test!(320, unreadable_analysis_run_is_reported_and_blocks_no_analysis);
/// An AnalysisRun the types cannot read, in the list a restarted controller starts from: it is
/// reported (Error with the field at fault, one event) and another Rollout's analysis still runs.
pub async fn unreadable_analysis_run_is_reported_and_blocks_no_analysis(h: Arc<Harness>) {
    let provider = Provider::start().await;
    let s = Scene::new(&h.stack, "unreadablerun", &["web-stable", "web-canary"]).await;
    template(&s, "healthy", json!([web_metric("healthy", &format!("{}/ok", provider.base), "result == 1.0")])).await;
    s.create(&analysed("healthy")).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    let dynamic: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<AnalysisRun>(&()));
    let broken: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "broken", "labels": {"sluice.dev/rollout": "elsewhere"}},
        "spec": {"metrics": "fast"}
    }))
    .unwrap();
    loosen_run_schema(&h, true).await;
    wait_for("the loose schema to accept the run", DEADLINE, || async {
        dynamic.create(&PostParams::default(), &broken).await.ok().map(|_| ())
    })
    .await;
    loosen_run_schema(&h, false).await;

    // A fresh list holding the unreadable run: every watch cache must still fill.
    h.kill("main");
    h.start("main", &[]);
    let reported = wait_for("the unreadable run to be reported", DEADLINE, || async {
        let object = dynamic.get("broken").await.ok()?;
        let status = &object.data["status"];
        (status["phase"] == "Error").then(|| status["message"].as_str().unwrap_or_default().to_string())
    })
    .await;
    assert!(reported.contains("cannot be read (spec.metrics: invalid type"), "the message names the field at fault: {reported}");

    s.set_image("web:2").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 2)]).await;
    let ours = runs(&s).await;
    assert!(ours.iter().any(|r| r.status.as_ref().is_some_and(|st| st.phase == AnalysisPhase::Successful)), "{ours:?}");

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(s.client.clone(), &s.ns);
    let about_it: Vec<_> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some("AnalysisRun") && r.name.as_deref() == Some("broken")))
        .collect();
    assert_eq!(about_it.len(), 1, "said once: {about_it:?}");
    assert_eq!(about_it[0].reason.as_deref(), Some("InvalidSpec"));
    assert_eq!(about_it[0].series.as_ref().map_or(1, |s| s.count), 1, "said once");

    dynamic.delete("broken", &DeleteParams::default()).await.expect("delete accepted");
}
