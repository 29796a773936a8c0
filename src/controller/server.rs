//! /healthz, /readyz and /metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What /readyz answers. A replica waiting for the Lease is ready as a standby (so a Deployment
/// rollout of the controller goes on); the one that acts is ready once its watches have synced.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicU8>);

const STARTING: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;

impl Readiness {
    pub fn standby(&self) {
        self.0.store(STANDBY, Ordering::Relaxed);
    }

    /// Acting, but not yet served by synced watches.
    pub fn starting(&self) {
        self.0.store(STARTING, Ordering::Relaxed);
    }

    pub fn ready(&self) {
        self.0.store(READY, Ordering::Relaxed);
    }

    fn answer(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::Relaxed) {
            READY => (StatusCode::OK, "ready"),
            STANDBY => (StatusCode::OK, "standby"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        }
    }
}

pub async fn serve(addr: SocketAddr, registry: Arc<Registry>, readiness: Readiness) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|State((_, readiness)): State<(Arc<Registry>, Readiness)>| async move { readiness.answer() }))
        .route(
            "/metrics",
            get(|State((registry, _)): State<(Arc<Registry>, Readiness)>| async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => (StatusCode::OK, [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], body),
                    Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], String::new()),
                }
            }),
        )
        .with_state((registry, readiness));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
