//! Helpers shared by the provider tests: a run to record measurements into, metric builders,
//! and local servers each test starts and stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice::analysis::condition::MeasuredValue;
use sluice::analysis::providers::Providers;
use sluice::analysis::run;
use sluice::api::{AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, Metric, MetricProvider, MetricResult, PrometheusMetric};
use sluice::egress::{DEFAULT_MAX_ANSWER, Egress, Policy};
use sluice::ports::{Measuring, ProviderError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::Stack;
pub use crate::support::server::Server;

/// A name no earlier run against an attached stack has used.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = Timestamp::now().as_nanosecond() % 1_000_000_000;
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The providers as the controller builds them: moto's AWS configuration, the real API server, and
/// loopback listed as an allowed host (the local Prometheus and test servers listen there).
pub async fn providers(stack: &Stack) -> Providers {
    providers_allowing(stack, &["127.0.0.1"]).await
}

/// The providers with these allowed hosts (none: the default policy).
pub async fn providers_allowing(stack: &Stack, hosts: &[&str]) -> Providers {
    let kube = stack.kube().await;
    let policy = Policy::new(hosts.iter().map(|h| h.parse().expect("a host pattern")).collect());
    Providers::new(&stack.aws(), Some(kube.clone()), Arc::new(Egress::new(policy, Some(kube), DEFAULT_MAX_ANSWER)))
}

pub fn prometheus(address: &str, query: &str) -> Metric {
    Metric {
        name: "m".into(),
        provider: MetricProvider {
            prometheus: Some(PrometheusMetric { address: address.into(), query: query.into(), ..Default::default() }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An AnalysisRun of one metric, as the controller keeps it.
pub struct Run {
    pub spec: AnalysisRunSpec,
    pub status: AnalysisRunStatus,
}

impl Run {
    pub fn of(metric: Metric) -> Self {
        let spec = AnalysisRunSpec { metrics: vec![metric], args: Vec::new(), terminate: false };
        Self { spec, status: AnalysisRunStatus { started_at: Some(Time(Timestamp::now())), ..Default::default() } }
    }

    /// Takes one measurement with the real provider and records it as the controller does.
    pub async fn measure(&mut self, providers: &Providers, namespace: &str) -> Result<MeasuredValue, ProviderError> {
        let started = Timestamp::now();
        let (number, resumed) = run::progress(&self.status, &self.spec.metrics[0].name);
        let at = Measuring { namespace, run: "provider-test", run_uid: "", args: &self.spec.args, now: started, number, resumed };
        let outcome = providers.measure(&at, &self.spec.metrics[0]).await;
        run::record(&self.spec, &mut self.status, 0, started, Timestamp::now(), outcome.clone().map_err(|e| e.to_string()));
        outcome
    }

    pub fn result(&self) -> &MetricResult {
        &self.status.metric_results[0]
    }

    pub fn last_phase(&self) -> AnalysisPhase {
        self.result().measurements.last().expect("a measurement").phase
    }
}

/// A TCP listener that accepts connections and never answers; stopped when dropped.
pub struct Silent {
    pub address: String,
    task: JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { address, task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A namespace with one Secret, for headers read from Secrets; deleted with [`drop_namespace`].
pub async fn namespace_with_secret(stack: &Stack, secret: &str, key: &str, value: &str) -> String {
    namespace_with_secret_data(stack, secret, &[(key, value)]).await
}

/// A namespace with one Secret holding these keys; deleted with [`drop_namespace`].
pub async fn namespace_with_secret_data(stack: &Stack, secret: &str, data: &[(&str, &str)]) -> String {
    use k8s_openapi::api::core::v1::Secret;
    let client = stack.kube().await;
    let namespace = crate::support::namespace(&client, "providers").await;
    let api: kube::Api<Secret> = kube::Api::namespaced(client, &namespace);
    let data: serde_json::Map<String, serde_json::Value> = data.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    let object: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": secret},
        "stringData": data,
    }))
    .unwrap();
    api.create(&Default::default(), &object).await.expect("Secret created");
    namespace
}

pub async fn drop_namespace(stack: &Stack, namespace: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(stack.kube().await);
    let _ = api.delete(namespace, &Default::default()).await;
}

/// Normal samples from a seeded generator (SplitMix64, Box–Muller): the same on every run.
pub fn normal_samples(seed: u64, mean: f64, sd: f64, n: usize) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}
