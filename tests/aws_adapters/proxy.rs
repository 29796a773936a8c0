//! A fault-injecting HTTP proxy in front of moto. It answers a share of the requests itself,
//! with a throttling error (HTTP 400 in the service's own error format) or HTTP 503, without
//! forwarding them, and forwards the rest. The choice comes from a seeded generator, so a run is
//! repeatable. It records every action it forwarded, so a test can show each call landed once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Which failures the proxy answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 with the service's throttling error code.
    Throttle,
    /// HTTP 503 with an empty body.
    Unavailable,
    /// Either, half and half.
    Mixed,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// Percent of matching requests answered with a fault.
    pub percent: u64,
    pub fault: Fault,
    /// Only requests for these actions are faulted; empty means all.
    pub only: Vec<&'static str>,
    /// Never more faults than this for one SDK operation (all attempts of an operation carry
    /// the same `amz-sdk-invocation-id`), so a client retrying more often gets through.
    pub max_per_operation: u32,
}

impl Plan {
    pub fn none() -> Plan {
        Plan { percent: 0, fault: Fault::Mixed, only: Vec::new(), max_per_operation: 0 }
    }
}

struct Inner {
    plan: Plan,
    rng: u64,
    /// Faults answered so far, by invocation id.
    per_operation: HashMap<String, u32>,
    forwarded: Vec<String>,
    faulted: u64,
    requests: u64,
}

pub struct Proxy {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    upstream: String,
    client: reqwest::Client,
}

impl Proxy {
    /// Starts on 127.0.0.1 (a free port), forwarding to `upstream`; stopped when dropped.
    pub async fn start(upstream: &str, seed: u64) -> Proxy {
        let inner = Arc::new(Mutex::new(Inner {
            plan: Plan::none(),
            rng: seed,
            per_operation: HashMap::new(),
            forwarded: Vec::new(),
            faulted: 0,
            requests: 0,
        }));
        let shared = Shared { inner: inner.clone(), upstream: upstream.trim_end_matches('/').to_string(), client: reqwest::Client::new() };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("proxy serves");
        });
        Proxy { url, inner, server }
    }

    pub fn set_plan(&self, plan: Plan) {
        let mut inner = self.inner.lock().unwrap();
        inner.plan = plan;
        inner.per_operation.clear();
    }

    /// How many requests for `action` reached moto.
    pub fn forwarded(&self, action: &str) -> usize {
        self.inner.lock().unwrap().forwarded.iter().filter(|a| *a == action).count()
    }

    /// Forwarded actions with their counts.
    pub fn forwarded_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for action in &self.inner.lock().unwrap().forwarded {
            *counts.entry(action.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// (requests received, requests answered with a fault).
    pub fn totals(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.requests, inner.faulted)
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.forwarded.clear();
        inner.faulted = 0;
        inner.requests = 0;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// SplitMix64: a tiny seeded generator, enough to pick faults repeatably.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The action of a request: ECS names it in X-Amz-Target (JSON protocol), ELBv2 in the
/// `Action` form field (query protocol).
fn action_of(headers: &HeaderMap, body: &[u8]) -> (String, bool) {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return (target.rsplit('.').next().unwrap_or(target).to_string(), true);
    }
    let body = String::from_utf8_lossy(body);
    let action = body.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or("unknown").to_string();
    (action, false)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let (action, json) = action_of(&parts.headers, &body);
    let invocation = parts.headers.get("amz-sdk-invocation-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let fault = {
        let mut inner = shared.inner.lock().unwrap();
        inner.requests += 1;
        let plan = inner.plan.clone();
        let applies = plan.only.is_empty() || plan.only.contains(&action.as_str());
        let roll = next(&mut inner.rng);
        let so_far = inner.per_operation.get(&invocation).copied().unwrap_or(0);
        let hit = applies && roll % 100 < plan.percent && so_far < plan.max_per_operation;
        if hit {
            *inner.per_operation.entry(invocation).or_insert(0) += 1;
            inner.faulted += 1;
            Some(match plan.fault {
                Fault::Mixed if (roll >> 32).is_multiple_of(2) => Fault::Throttle,
                Fault::Mixed => Fault::Unavailable,
                other => other,
            })
        } else {
            inner.forwarded.push(action.clone());
            None
        }
    };
    match fault {
        Some(Fault::Throttle) if json => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", "ThrottlingException")],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
            .into_response(),
        Some(Fault::Throttle) => (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
        )
            .into_response(),
        Some(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        None => forward(&shared, parts, body).await,
    }
}

async fn forward(shared: &Shared, parts: axum::http::request::Parts, body: Bytes) -> Response {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = shared.client.request(parts.method.clone(), format!("{}{path}", shared.upstream)).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(response) => response,
        Err(error) => return (StatusCode::BAD_GATEWAY, format!("proxy: {error}")).into_response(),
    };
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
    }
    let body = upstream.bytes().await.unwrap_or_default();
    (status, headers, body).into_response()
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding" | "keep-alive" | "upgrade")
}
