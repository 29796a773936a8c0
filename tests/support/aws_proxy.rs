//! A proxy in front of moto that counts every AWS call by service and operation and, at a
//! chosen rate, answers ELBv2 and ECS calls with throttling or a 5xx instead of passing them on,
//! in the wire format of each protocol, so the real SDK retries them as it would in AWS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::Response;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Throttled,
    Unavailable,
}

#[derive(Clone, Debug)]
pub struct Call {
    pub service: &'static str,
    pub operation: String,
    pub fault: Option<Fault>,
    pub at: Instant,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    /// Faults per million calls to ELBv2 and ECS.
    fault_ppm: AtomicU64,
    seed: u64,
    sequence: AtomicU64,
    calls: Mutex<Vec<Call>>,
}

pub struct AwsProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: &str, fault_rate: f64, seed: u64) -> AwsProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            fault_ppm: AtomicU64::new(ppm(fault_rate)),
            seed,
            sequence: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = shared.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { forward(&state, method, uri, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AwsProxy { endpoint, shared, task }
    }

    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.fault_ppm.store(ppm(rate), Ordering::Relaxed);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ppm(rate: f64) -> u64 {
    (rate.clamp(0.0, 1.0) * 1_000_000.0) as u64
}

/// The service and operation of a request: JSON protocols name it in `X-Amz-Target`, the query
/// protocol in the `Action` form field, RPC v2 CBOR in the path.
fn operation(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> (&'static str, String) {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
        let service = if prefix.starts_with("AmazonEC2ContainerService") { "ECS" } else { "other" };
        return (service, operation.to_string());
    }
    if let Some(operation) = uri.path().split("/operation/").nth(1) {
        return ("CloudWatch", operation.to_string());
    }
    let form = String::from_utf8_lossy(body);
    let action = form.split('&').find_map(|pair| pair.strip_prefix("Action=")).unwrap_or("unknown");
    // The controller calls only ELBv2 through the query protocol.
    ("ELBv2", action.to_string())
}

/// A fixed pseudo-random draw per call: the same seed faults the same calls.
fn draw(seed: u64, sequence: u64) -> u64 {
    let mut x = seed ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % 1_000_000
}

async fn forward(state: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (service, operation) = operation(&uri, &headers, &body);
    let sequence = state.sequence.fetch_add(1, Ordering::Relaxed);
    let roll = draw(state.seed, sequence);
    let faultable = service == "ELBv2" || service == "ECS";
    let fault = (faultable && roll < state.fault_ppm.load(Ordering::Relaxed)).then_some(if roll.is_multiple_of(2) {
        Fault::Throttled
    } else {
        Fault::Unavailable
    });
    state.calls.lock().unwrap().push(Call { service, operation, fault, at: Instant::now() });
    if let Some(fault) = fault {
        return fault_response(service, fault);
    }
    let url = format!("{}{}", state.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = state.http.request(method, url).body(body);
    for (name, value) in headers.iter().filter(|(name, _)| !hop_by_hop(name)) {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(upstream) => {
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers().iter().filter(|(name, _)| !hop_by_hop(name)) {
                response = response.header(name, value);
            }
            let bytes = upstream.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(error) => Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(error.to_string())).unwrap(),
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "host" | "connection" | "transfer-encoding" | "content-length" | "keep-alive")
}

/// Throttling as each protocol reports it (400 with its error code), or a bare 503.
fn fault_response(service: &str, fault: Fault) -> Response {
    let (status, content_type, body) = match (service, fault) {
        ("ECS", Fault::Throttled) => {
            (StatusCode::BAD_REQUEST, "application/x-amz-json-1.1", r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#)
        }
        ("ECS", Fault::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/x-amz-json-1.1",
            r#"{"__type":"ServerException","message":"Service unavailable"}"#,
        ),
        (_, Fault::Throttled) => (
            StatusCode::BAD_REQUEST,
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>fault</RequestId></ErrorResponse>",
        ),
        (_, Fault::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/xml",
            "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>Service unavailable</Message></Error>\
             <RequestId>fault</RequestId></ErrorResponse>",
        ),
    };
    Response::builder().status(status).header("content-type", content_type).body(Body::from(body)).unwrap()
}
