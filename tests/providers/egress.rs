//! The outbound policy as metrics meet it: where web and Prometheus metrics may connect, redirects,
//! answer sizes, what an AnalysisRun stores, and Secrets only where they are offered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::core::v1::Namespace;
use sluice::analysis::condition::MeasuredValue;
use sluice::analysis::run::MAX_STORED_VALUE;
use sluice::api::{AnalysisPhase, Metric, MetricProvider, SecretKeyRef, WebHeader, WebMetric};

use crate::common::{Run, Server, drop_namespace, namespace_with_secret, providers, providers_allowing};
use crate::support::Stack;

fn web(url: String) -> Metric {
    Metric {
        name: "web".into(),
        provider: MetricProvider { web: Some(WebMetric { url, timeout: Some("5s".into()), ..Default::default() }), ..Default::default() },
        ..Default::default()
    }
}

/// A server counting its requests, answering `{"ok": true}`.
async fn counting() -> (Server, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let router = Router::new().route(
        "/ok",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(serde_json::json!({"ok": true})) }
        }),
    );
    (Server::start(router).await, hits)
}

register_test!(240, loopback_is_denied_by_default_and_allowed_when_listed);
pub async fn loopback_is_denied_by_default_and_allowed_when_listed(stack: Arc<Stack>) {
    let (server, hits) = counting().await;
    let metric = web(format!("{}/ok", server.address));
    let mut run = Run::of(metric.clone());
    let error = run.measure(&providers_allowing(&stack, &[]).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "denied", "{error}");
    assert!(error.to_string().contains("127.0.0.1 is a loopback address") && error.to_string().contains("--allow-host"), "{error}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was sent");

    let error = Run::of(web(server.address.replace("127.0.0.1", "localhost") + "/ok"))
        .measure(&providers_allowing(&stack, &[]).await, "default")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("localhost resolves to"), "names are checked by what they resolve to: {error}");

    let port = server.address.rsplit(':').next().unwrap();
    let listed = providers_allowing(&stack, &[&format!("127.0.0.1:{port}")]).await;
    assert_eq!(Run::of(metric).measure(&listed, "default").await, Ok(MeasuredValue::Json(serde_json::json!({"ok": true}))));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let error = Run::of(web("http://127.0.0.1:1/ok".into())).measure(&listed, "default").await.unwrap_err();
    assert_eq!(error.category(), "denied", "only the listed port: {error}");
    drop(server);
}

register_test!(250, a_namespace_annotation_extends_the_allowed_hosts);
pub async fn a_namespace_annotation_extends_the_allowed_hosts(stack: Arc<Stack>) {
    let (server, hits) = counting().await;
    let client = stack.kube().await;
    let namespace = crate::support::namespace(&client, "egress").await;
    let providers = providers_allowing(&stack, &[]).await;
    let metric = web(format!("{}/ok", server.address));
    assert_eq!(Run::of(metric.clone()).measure(&providers, &namespace).await.unwrap_err().category(), "denied");
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let patch = serde_json::json!({"metadata": {"annotations": {sluice::egress::NAMESPACE_ANNOTATION: "127.0.0.0/8"}}});
    api.patch(&namespace, &Default::default(), &kube::api::Patch::Merge(&patch)).await.expect("annotated");
    // A fresh policy reads the annotation (a running one within 30 s).
    let providers = providers_allowing(&stack, &[]).await;
    assert!(Run::of(metric.clone()).measure(&providers, &namespace).await.is_ok());
    assert_eq!(Run::of(metric).measure(&providers, "default").await.unwrap_err().category(), "denied", "only in that namespace");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    drop_namespace(&stack, &namespace).await;
    drop(server);
}

register_test!(260, link_local_and_metadata_addresses_are_denied);
pub async fn link_local_and_metadata_addresses_are_denied(stack: Arc<Stack>) {
    let providers = providers(&stack).await;
    for url in
        ["http://169.254.169.254/latest/meta-data/iam/", "http://[fd00:ec2::254]/latest/", "http://169.254.10.1/", "http://0.0.0.0:80/"]
    {
        let error = Run::of(web(url.into())).measure(&providers, "default").await.unwrap_err();
        assert_eq!(error.category(), "denied", "{url}: {error}");
        assert!(error.to_string().contains("Sluice does not connect to"), "{error}");
    }
}

register_test!(270, a_redirect_is_not_followed);
pub async fn a_redirect_is_not_followed(stack: Arc<Stack>) {
    let (target, hits) = counting().await;
    let location = format!("{}/ok", target.address);
    let redirecting = Server::start(Router::new().route(
        "/moved",
        get(move || {
            let location = location.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, location)]) }
        }),
    ))
    .await;
    let mut run = Run::of(web(format!("{}/moved", redirecting.address)));
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "status", "{error}");
    assert!(error.to_string().contains("302 Found; redirects are not followed"), "{error}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect target was never asked");
    drop((target, redirecting));
}

/// A body streamed in 64 KiB chunks without a length: `total` bytes, or without end.
fn streamed(total: Option<usize>) -> Body {
    let chunk = Bytes::from(vec![b'7'; 64 * 1024]);
    let chunks = futures::stream::unfold(0usize, move |sent| {
        let chunk = chunk.clone();
        async move { total.is_none_or(|t| sent < t).then(|| (Ok::<_, std::io::Error>(chunk), sent + 64 * 1024)) }
    });
    Body::from_stream(chunks)
}

register_test!(280, an_answer_over_the_limit_is_refused);
pub async fn an_answer_over_the_limit_is_refused(stack: Arc<Stack>) {
    let server = Server::start(
        Router::new()
            .route("/big", get(|| async { streamed(Some(4 << 20)) }))
            .route("/endless", get(|| async { streamed(None) }))
            .route("/declared", get(|| async { ([(header::CONTENT_LENGTH, "4194304")], streamed(Some(4 << 20))).into_response() })),
    )
    .await;
    let providers = providers(&stack).await;
    for path in ["big", "endless", "declared"] {
        let started = std::time::Instant::now();
        let mut run = Run::of(web(format!("{}/{path}", server.address)));
        let error = run.measure(&providers, "default").await.unwrap_err();
        assert_eq!(error.category(), "response", "{path}: {error}");
        assert!(error.to_string().contains("answer larger than 1 MiB"), "{path}: {error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{path}: refused as it grew, not at the timeout");
        assert_eq!(run.last_phase(), AnalysisPhase::Error);
    }
    drop(server);
}

register_test!(290, a_huge_value_is_judged_whole_and_stored_cut);
pub async fn a_huge_value_is_judged_whole_and_stored_cut(stack: Arc<Stack>) {
    let values: Vec<f64> = (0..100_000).map(|i| f64::from(i % 100) / 1000.0).collect();
    let document = serde_json::to_string(&values).unwrap();
    assert!(document.len() > 100 * MAX_STORED_VALUE);
    let server =
        Server::start(Router::new().route("/many", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) })))
            .await;
    let mut metric = web(format!("{}/many", server.address));
    metric.success_condition = Some("size(result) == 100000 && result.all(x, x < 0.1)".into());
    let mut run = Run::of(metric);
    run.measure(&providers(&stack).await, "default").await.expect("measured");
    let measurement = run.result().measurements.last().unwrap();
    assert_eq!(measurement.phase, AnalysisPhase::Successful, "{:?}", measurement.message);
    let stored = measurement.value.as_deref().unwrap();
    assert!(stored.len() <= MAX_STORED_VALUE + 64 && stored.ends_with("in all)"), "{} bytes stored", stored.len());
    assert!(serde_json::to_vec(&run.status).unwrap().len() < 16 * 1024, "the status stays small");
    drop(server);
}

/// A client acting as `service_account` of `namespace`, with a token from the TokenRequest API.
pub async fn client_as(stack: &Stack, namespace: &str, service_account: &str) -> kube::Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let admin = stack.kube().await;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(admin.clone(), namespace);
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": service_account}})).unwrap();
    let _ = accounts.create(&Default::default(), &account).await;
    let request: TokenRequest = serde_json::from_value(serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = accounts.create_token_request(service_account, &Default::default(), &request).await.expect("a token");
    let token = token.status.expect("token status").token;
    let kubeconfig = kube::config::Kubeconfig::read_from(&stack.kubeconfig).expect("kubeconfig reads");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kubeconfig is valid");
    config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
    kube::Client::try_from(config).expect("client builds")
}

/// RBAC objects applied as the admin.
pub async fn apply_rbac(stack: &Stack, namespace: &str, objects: &[serde_json::Value]) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let admin = stack.kube().await;
    for object in objects {
        let name = object["metadata"]["name"].as_str().unwrap();
        let params = kube::api::PatchParams::apply("providers-test");
        if object["kind"] == "Role" {
            let api: kube::Api<Role> = kube::Api::namespaced(admin.clone(), namespace);
            api.patch(name, &params, &kube::api::Patch::Apply(object)).await.expect("Role applied");
        } else {
            let api: kube::Api<RoleBinding> = kube::Api::namespaced(admin.clone(), namespace);
            api.patch(name, &params, &kube::api::Patch::Apply(object)).await.expect("RoleBinding applied");
        }
    }
}

register_test!(300, a_secret_is_read_only_once_offered);
pub async fn a_secret_is_read_only_once_offered(stack: Arc<Stack>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = Server::start(Router::new().route(
        "/secure",
        get(move |headers: HeaderMap| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if headers.get("authorization").is_some_and(|v| v == "Bearer s3cret") {
                    axum::Json(serde_json::json!(1.0)).into_response()
                } else {
                    StatusCode::FORBIDDEN.into_response()
                }
            }
        }),
    ))
    .await;
    let namespace = namespace_with_secret(&stack, "web-token", "authorization", "Bearer s3cret").await;
    // Sluice as the chart installs it: no Secret access at all, only Namespaces to read.
    let as_sluice = client_as(&stack, &namespace, "sluice").await;
    let egress = sluice::egress::Egress::new(
        sluice::egress::Policy::new(vec!["127.0.0.1".parse().unwrap()]),
        Some(as_sluice.clone()),
        sluice::egress::DEFAULT_MAX_ANSWER,
    );
    let providers = sluice::analysis::providers::Providers::new(&stack.aws(), Some(as_sluice), Arc::new(egress));
    let mut metric = web(format!("{}/secure", server.address));
    metric.provider.web.as_mut().unwrap().headers.push(WebHeader {
        name: "Authorization".into(),
        value: None,
        secret_key_ref: Some(SecretKeyRef { name: "web-token".into(), key: "authorization".into() }),
    });
    let mut run = Run::of(metric.clone());
    let error = run.measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "secret", "{error}");
    let text = error.to_string();
    assert!(text.contains("it reads only Secrets offered to it") && text.contains("resourceNames: [web-token]"), "{text}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing sent without the Secret");

    // The namespace owner offers this one Secret, by name, as docs/security.md shows.
    apply_rbac(
        &stack,
        &namespace,
        &[
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "offer-web-token"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["web-token"], "verbs": ["get"]}]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "offer-web-token"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "offer-web-token"},
                "subjects": [{"kind": "ServiceAccount", "name": "sluice", "namespace": namespace}]}),
        ],
    )
    .await;
    let measured = crate::support::wait_for("the offer to take effect", std::time::Duration::from_secs(10), || {
        let (providers, metric) = (&providers, metric.clone());
        let namespace = namespace.clone();
        async move { Run::of(metric).measure(providers, &namespace).await.ok() }
    })
    .await;
    assert_eq!(measured, MeasuredValue::scalar(1.0));
    drop_namespace(&stack, &namespace).await;
    drop(server);
}

register_test!(310, a_hand_made_analysis_run_is_not_measured);
pub async fn a_hand_made_analysis_run_is_not_measured(stack: Arc<Stack>) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use sluice::api::{AnalysisRun, AnalysisRunSpec};
    let applied = stack.kubectl(&["apply", "-f", crate::support::path_str(&crate::support::repo().join("crds"))]);
    assert!(applied.status.success(), "kubectl apply -f crds/ failed: {}", String::from_utf8_lossy(&applied.stderr));
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(stack.kube().await);
    crate::support::wait_for("the CRDs Established", std::time::Duration::from_secs(60), || async {
        let established = |crd: CustomResourceDefinition| {
            crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        };
        established(crds.get("analysisruns.sluice.dev").await.ok()?)?;
        established(crds.get("rollouts.sluice.dev").await.ok()?)
    })
    .await;
    let (server, hits) = counting().await;
    let namespace = namespace_with_secret(&stack, "web-token", "authorization", "Bearer s3cret").await;
    // A tenant who may create AnalysisRuns but not read Secrets.
    apply_rbac(
        &stack,
        &namespace,
        &[
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "runs"},
                "rules": [{"apiGroups": ["sluice.dev"], "resources": ["analysisruns"], "verbs": ["create", "get", "list"]}]}),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "runs"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runs"},
                "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}]}),
        ],
    )
    .await;
    let tenant = client_as(&stack, &namespace, "tenant").await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(tenant.clone(), &namespace);
    assert!(secrets.get("web-token").await.is_err(), "the tenant may not read the Secret");

    let log = stack.dir.join(format!("controller-{namespace}.log"));
    let _controller = crate::support::controller::ControllerProcess::start(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &stack.kubeconfig,
        &stack.aws_endpoint,
        &log,
        &["--namespace", &namespace],
        &[("POD_NAME", "providers-test"), ("RUST_LOG", "info")],
    );
    let mut metric = web(format!("{}/ok", server.address));
    metric.provider.web.as_mut().unwrap().headers.push(WebHeader {
        name: "Authorization".into(),
        value: None,
        secret_key_ref: Some(SecretKeyRef { name: "web-token".into(), key: "authorization".into() }),
    });
    let run = AnalysisRun::new("exfiltrate", AnalysisRunSpec { metrics: vec![metric], args: Vec::new(), terminate: false });
    let runs: kube::Api<AnalysisRun> = kube::Api::namespaced(tenant, &namespace);
    runs.create(&Default::default(), &run).await.expect("the tenant creates the run");
    let message = crate::support::wait_for("the run to be marked", std::time::Duration::from_secs(30), || {
        let runs = runs.clone();
        async move { runs.get("exfiltrate").await.ok()?.status?.message.filter(|m| m.starts_with("not measured")) }
    })
    .await;
    assert!(message.contains("no controller ownerReference to a Rollout"), "{message}");
    let status = runs.get("exfiltrate").await.unwrap().status.unwrap();
    assert!(status.metric_results.is_empty(), "never measured: {status:?}");
    assert_eq!(status.phase, sluice::api::AnalysisPhase::Error, "a run that can never be measured has a phase that says so");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the server received nothing");
    drop_namespace(&stack, &namespace).await;
    drop(server);
}
