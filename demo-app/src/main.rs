//! A tiny HTTP service for rollouts on real pods.
//!
//! - `GET /` answers with the version, failing with 500 at the configured error rate;
//! - `GET /healthz` is the liveness probe, `GET /readyz` the readiness probe (it fails when the
//!   service is started with `--never-ready`, for a revision that must be held);
//! - `PUT /error-rate` with a body of `0.0`..`1.0` changes the error rate while it runs;
//! - `GET /metrics` counts requests by status code and version, in Prometheus' text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use clap::Parser;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The version this instance reports and labels its metrics with.
    #[arg(long, env = "APP_VERSION", default_value = "v1")]
    app_version: String,
    /// The share of requests answered with 500, from 0.0 to 1.0.
    #[arg(long, env = "ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Never pass the readiness probe.
    #[arg(long, env = "NEVER_READY")]
    never_ready: bool,
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: u16,
    version: String,
}

struct App {
    version: String,
    never_ready: bool,
    /// The error rate in millionths, so it can change without a lock.
    error_ppm: AtomicU64,
    served: AtomicU64,
    requests: Family<RequestLabels, Counter>,
    registry: Mutex<Registry>,
}

fn ppm(rate: f64) -> Option<u64> {
    (0.0..=1.0).contains(&rate).then(|| (rate * 1_000_000.0).round() as u64)
}

impl App {
    /// Spreads failures evenly: request n fails when it moves the failure count past n × rate,
    /// so every window of requests sees the configured rate, with no randomness.
    fn answer(&self) -> StatusCode {
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        let rate = self.error_ppm.load(Ordering::Relaxed);
        let failed_before = n * rate / 1_000_000;
        let failed_after = (n + 1) * rate / 1_000_000;
        if failed_after > failed_before { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
    }
}

async fn root(State(app): State<Arc<App>>) -> (StatusCode, String) {
    let code = app.answer();
    app.requests.get_or_create(&RequestLabels { code: code.as_u16(), version: app.version.clone() }).inc();
    (code, format!("{}\n", app.version))
}

async fn ready(State(app): State<Arc<App>>) -> StatusCode {
    if app.never_ready { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
}

async fn set_error_rate(State(app): State<Arc<App>>, body: String) -> (StatusCode, String) {
    match body.trim().parse::<f64>().ok().and_then(ppm) {
        Some(value) => {
            app.error_ppm.store(value, Ordering::Relaxed);
            (StatusCode::OK, format!("error rate {}\n", body.trim()))
        }
        None => (StatusCode::BAD_REQUEST, "the error rate is a number from 0.0 to 1.0\n".into()),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut text = String::new();
    let registry = app.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let code = match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let error_ppm = ppm(args.error_rate).ok_or("--error-rate is a number from 0.0 to 1.0")?;
    let requests = Family::<RequestLabels, Counter>::default();
    let mut registry = Registry::default();
    registry.register("demo_http_requests", "Requests answered, by status code and version", requests.clone());
    let app = Arc::new(App {
        version: args.app_version,
        never_ready: args.never_ready,
        error_ppm: AtomicU64::new(error_ppm),
        served: AtomicU64::new(0),
        requests,
        registry: Mutex::new(registry),
    });
    let router = Router::new()
        .route("/", get(root))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/error-rate", put(set_error_rate))
        .route("/metrics", get(metrics))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("sluice-demo-app {} listening on {}", app.version, args.listen);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            term.recv().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(rate: f64) -> App {
        App {
            version: "v1".into(),
            never_ready: false,
            error_ppm: AtomicU64::new(ppm(rate).unwrap()),
            served: AtomicU64::new(0),
            requests: Family::default(),
            registry: Mutex::new(Registry::default()),
        }
    }

    #[test]
    fn failures_are_spread_at_the_configured_rate() {
        let app = app(0.25);
        let failed = (0..1000).filter(|_| app.answer() == StatusCode::INTERNAL_SERVER_ERROR).count();
        assert_eq!(failed, 250);
        let app = self::app(0.0);
        assert!((0..1000).all(|_| app.answer() == StatusCode::OK));
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert_eq!(ppm(1.5), None);
        assert_eq!(ppm(-0.1), None);
        assert_eq!(ppm(0.5), Some(500_000));
    }
}
