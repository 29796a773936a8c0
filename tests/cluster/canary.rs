//! Canaries of the demo app on real pods, driven by the in-cluster controller: the role
//! Services' EndpointSlices hold the right pod IPs at each step, and the error rate Prometheus
//! scrapes from the pods decides promotion or rollback.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use sluice::api::{Rollout, RolloutPhase};

use crate::support::{namespace, wait_for};
use crate::{Cluster, ready};

const DEADLINE: Duration = Duration::from_secs(120);

/// One namespace with the demo app's Services and error-rate template.
struct Scene {
    cluster: Arc<Cluster>,
    client: kube::Client,
    ns: String,
    rollouts: Api<Rollout>,
}

impl Scene {
    async fn new(cluster: Arc<Cluster>, prefix: &str) -> Scene {
        let client = cluster.stack.kube().await;
        let ns = namespace(&client, prefix).await;
        let prometheus = cluster.stack.url_for_pods(&cluster.stack.prometheus_url);
        // `web` reaches every pod of the app (the load goes through it and kube-proxy); the
        // role Services are the Rollout's, and Sluice points them at one revision each.
        let mut manifest = String::new();
        for (name, owned) in [("web", false), ("web-stable", true), ("web-canary", true)] {
            let labels = if owned { "\n  labels: {sluice.dev/rollout: web}" } else { "" };
            manifest.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}{labels}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n"
            ));
        }
        // The share of 500s among the answers of one version, over the last 8 s of scrapes.
        let query = format!(
            "(sum(rate(demo_http_requests_total{{namespace=\"{ns}\",version=\"{{{{args.version}}}}\",code=\"500\"}}[8s])) or vector(0)) / sum(rate(demo_http_requests_total{{namespace=\"{ns}\",version=\"{{{{args.version}}}}\"}}[8s]))"
        );
        manifest.push_str(&format!(
            r#"apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: error-rate, namespace: {ns}}}
spec:
  args: [{{name: version}}]
  metrics:
    - name: error-rate
      # Long enough for a new pod to be discovered and scraped twice (rate needs two samples).
      initialDelay: 15s
      interval: 3s
      count: 3
      successCondition: result < 0.05
      provider:
        prometheus:
          address: {prometheus}
          timeout: 5s
          query: '{query}'
"#
        ));
        cluster.apply(&manifest);
        Scene { rollouts: Api::namespaced(client.clone(), &ns), cluster, client, ns }
    }

    /// The Rollout of the demo app at `version`, with `env` extra, as a user would apply it.
    fn apply_rollout(&self, version: &str, env: &str, extra_spec: &str) {
        let ns = &self.ns;
        self.cluster.apply(&format!(
            r#"apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: {ns}}}
spec:{extra_spec}
  workload:
    kubernetes:
      replicas: 2
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata:
          labels: {{app: web}}
          annotations: {{prometheus.io/scrape: "true", prometheus.io/port: "8080"}}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: web
              image: sluice.local/demo-app:dev
              imagePullPolicy: Never
              env: [{{name: APP_VERSION, value: {version}}}{env}]
              ports: [{{containerPort: 8080}}]
              readinessProbe: {{httpGet: {{path: /readyz, port: 8080}}, periodSeconds: 1}}
  strategy:
    canary:
      stableService: web-stable
      canaryService: web-canary
      steps:
        - setWeight: 50
        - pause: {{}}
        - analysis:
            templates: [{{templateName: error-rate}}]
            args: [{{name: version, value: {version}}}]
"#
        ));
    }

    async fn rollout(&self) -> Rollout {
        self.rollouts.get("web").await.expect("rollout read")
    }

    async fn wait(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        wait_for(what, DEADLINE, || async {
            let rollout = self.rollouts.get_opt("web").await.ok().flatten()?;
            check(&rollout).then_some(rollout)
        })
        .await
    }

    /// Ready pod IPs of one revision, read from the pods themselves.
    async fn ready_pod_ips(&self, revision: &str) -> BTreeSet<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let list = pods.list(&ListParams::default().labels(&format!("sluice.dev/revision={revision}"))).await.expect("pods listed");
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect()
    }

    /// Ready endpoint addresses of a Service, from its EndpointSlices.
    async fn endpoint_ips(&self, service: &str) -> BTreeSet<String> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.ns);
        let list =
            slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await.expect("slices listed");
        list.items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect()
    }

    /// Waits until the Service's EndpointSlices hold exactly the ready pods of `revision`.
    async fn wait_endpoints(&self, service: &str, revision: &str, expected: usize) {
        wait_for(&format!("{service}'s endpoints to be the {expected} ready pods of {revision}"), DEADLINE, || async {
            let pods = self.ready_pod_ips(revision).await;
            let endpoints = self.endpoint_ips(service).await;
            (pods.len() == expected && endpoints == pods).then_some(())
        })
        .await;
    }

    fn promote(&self) {
        let output = self
            .cluster
            .stack
            .command(env!("CARGO_BIN_EXE_kubectl-sluice"))
            .args(["promote", "web", "-n", &self.ns])
            .output()
            .expect("plugin runs");
        assert!(output.status.success(), "kubectl sluice promote: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Requests through the `web` Service's cluster IP (kube-proxy's rules on the host), until
    /// the returned flag is cleared; counts the answers.
    async fn load(&self) -> Load {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let ip = services.get("web").await.expect("web service").spec.and_then(|s| s.cluster_ip).expect("cluster IP");
        let load = Load { running: Arc::new(AtomicBool::new(true)), answered: Arc::new(AtomicU64::new(0)), last_error: Default::default() };
        let (running, answered, last_error) = (load.running.clone(), load.answered.clone(), load.last_error.clone());
        // A new connection per request, so kube-proxy spreads them over the endpoints.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).pool_max_idle_per_host(0).build().expect("client");
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match http.get(format!("http://{ip}/")).send().await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => *last_error.lock().unwrap() = Some(format!("{error:?}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        load
    }
}

struct Load {
    running: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl Load {
    /// Waits for the first answers, so the analysis has requests to measure.
    async fn flowing(&self) {
        wait_for("answers through the web Service", DEADLINE, || async {
            let answered = self.answered.load(Ordering::Relaxed);
            (answered > 20).then_some(()).or_else(|| {
                eprintln!("load: {answered} answers, last error {:?}", self.last_error.lock().unwrap());
                None
            })
        })
        .await;
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

fn step(rollout: &Rollout) -> Option<i32> {
    rollout.status.as_ref()?.current_step_index
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref()?.phase
}

fn revisions(rollout: &Rollout) -> (String, String) {
    let status = rollout.status.as_ref().expect("status");
    (status.stable_revision.clone().expect("stable revision"), status.update_revision.clone().expect("update revision"))
}

register_test!(20, a_canary_on_real_pods_is_decided_by_their_scraped_error_rate);
pub async fn a_canary_on_real_pods_is_decided_by_their_scraped_error_rate(cluster: Arc<Cluster>) {
    let s = Scene::new(cluster, "real-canary").await;
    s.apply_rollout("v1", "", "");
    let first = s.wait("v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy)).await;
    let (v1, _) = revisions(&first);
    s.wait_endpoints("web-stable", &v1, 2).await;
    let load = s.load().await;
    load.flowing().await;

    // v2 answers well: 50 %, a manual pause, then analysis of its scraped error rate.
    s.apply_rollout("v2", "", "");
    let paused = s.wait("v2 at the pause", |r| step(r) == Some(1) && phase(r) == Some(RolloutPhase::Paused)).await;
    let (stable, v2) = revisions(&paused);
    assert_eq!(stable, v1);
    // Two replicas at 50 %: one pod of each revision, as Argo Rollouts sizes a canary.
    s.wait_endpoints("web-canary", &v2, 1).await;
    s.wait_endpoints("web-stable", &v1, 1).await;
    s.promote();
    let promoted = s.wait("v2 promoted by its analysis", |r| phase(r) == Some(RolloutPhase::Healthy) && revisions(r).0 == v2).await;
    assert!(!promoted.status.as_ref().expect("status").abort);
    s.wait_endpoints("web-stable", &v2, 2).await;

    // v3 starts well; at the pause its pods are switched to fail half their requests, and the
    // analysis after promotion rolls it back.
    s.apply_rollout("v3", "", "");
    let paused = s.wait("v3 at the pause", |r| step(r) == Some(1) && phase(r) == Some(RolloutPhase::Paused)).await;
    let (_, v3) = revisions(&paused);
    s.wait_endpoints("web-canary", &v3, 1).await;
    let http = reqwest::Client::new();
    for ip in s.ready_pod_ips(&v3).await {
        let switched = http.put(format!("http://{ip}:8080/error-rate")).body("0.5").send().await.expect("error rate switched");
        assert!(switched.status().is_success(), "PUT /error-rate: {}", switched.status());
    }
    s.promote();
    let aborted = s.wait("v3 aborted by its analysis", |r| r.status.as_ref().is_some_and(|s| s.abort)).await;
    let status = aborted.status.as_ref().expect("status");
    assert_eq!(status.stable_revision.as_deref(), Some(v2.as_str()), "the stable revision stays v2");
    let reason = status.abort_reason.clone().unwrap_or_default();
    assert!(reason.contains("error-rate"), "the abort names the failed metric: {reason}");
    s.wait_endpoints("web-stable", &v2, 2).await;
    let current = s.rollout().await;
    assert_ne!(phase(&current), Some(RolloutPhase::Healthy), "an aborted v3 is not Healthy");
    assert!(load.answered.load(Ordering::Relaxed) > 100, "the load reached the pods through kube-proxy");
}

register_test!(30, a_revision_that_never_becomes_ready_is_held_then_aborted);
pub async fn a_revision_that_never_becomes_ready_is_held_then_aborted(cluster: Arc<Cluster>) {
    let s = Scene::new(cluster, "real-unready").await;
    let deadline = "\n  progressDeadlineSeconds: 20\n  progressDeadlineAbort: true";
    s.apply_rollout("v1", "", deadline);
    let first = s.wait("v1 Healthy", |r| phase(r) == Some(RolloutPhase::Healthy)).await;
    let (v1, _) = revisions(&first);
    s.apply_rollout("v2", ", {name: NEVER_READY, value: \"true\"}", deadline);
    let held = s.wait("v2 started", |r| revisions(r).1 != v1).await;
    let (_, v2) = revisions(&held);
    // Its pod runs but never passes its readiness probe: no endpoint, the step is not passed.
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    wait_for("the v2 pod running, not ready", DEADLINE, || async {
        let list = pods.list(&ListParams::default().labels(&format!("sluice.dev/revision={v2}"))).await.ok()?;
        list.items.iter().any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).then_some(())
    })
    .await;
    let now = s.rollout().await;
    assert_ne!(step(&now), Some(1), "the pause after an unready canary was reached");
    assert!(s.endpoint_ips("web-canary").await.is_empty(), "an unready pod got canary traffic");
    let aborted = s.wait("v2 aborted by the progress deadline", |r| r.status.as_ref().is_some_and(|s| s.abort)).await;
    let reason = aborted.status.as_ref().and_then(|s| s.abort_reason.clone()).unwrap_or_default();
    assert!(reason.contains("no progress for 20s"), "the abort names the deadline: {reason}");
    s.wait_endpoints("web-stable", &v1, 2).await;
}
