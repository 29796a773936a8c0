//! Lambda functions for tests: each is AWS's runtime interface emulator (built by `e2e/stack
//! install`) running the handler process `tests/support/lambda/hook.py`, a custom runtime that
//! answers as an ECS lifecycle hook does. The emulator serves one function at the fixed path
//! `/2015-03-31/functions/function/invocations`, so a proxy in front routes Lambda's Invoke by
//! function name or ARN to its emulator, and answers 404 with Lambda's error for any other name.
//! Every process is stopped by its process group when the functions are dropped.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Stack;

pub struct LambdaFunctions {
    /// What the AWS SDK's Lambda client is pointed at (`AWS_ENDPOINT_URL_LAMBDA`).
    pub endpoint: String,
    emulators: std::sync::Mutex<Vec<Child>>,
    /// The emulators' invocation addresses.
    listening: Vec<String>,
    logs: BTreeMap<String, PathBuf>,
    proxy: tokio::task::JoinHandle<()>,
}

struct Routes {
    by_function: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl LambdaFunctions {
    /// One emulator per function ARN, each logging the payloads its handler receives.
    pub async fn start(stack: &Stack, arns: &[&str]) -> LambdaFunctions {
        let handler = super::repo().join("tests/support/lambda/hook.py");
        let mut emulators = Vec::new();
        let mut logs = BTreeMap::new();
        let mut by_function = BTreeMap::new();
        let mut listening = Vec::new();
        for arn in arns {
            let (invoke_port, runtime_port) = (free_port(), free_port());
            // Tests run side by side on one stack: each emulator has files of its own.
            let log = stack.dir.join(format!("lambda-{invoke_port}.payloads"));
            let output = std::fs::File::create(stack.dir.join("logs").join(format!("lambda-{invoke_port}.log"))).expect("emulator log");
            let child = Command::new("aws-lambda-rie")
                .args(["--runtime-interface-emulator-address", &format!("127.0.0.1:{invoke_port}")])
                .args(["--runtime-api-address", &format!("127.0.0.1:{runtime_port}")])
                .arg("python3")
                .arg(&handler)
                .env("PATH", &stack.path)
                .env("HOOK_LOG", &log)
                .process_group(0)
                .stdout(Stdio::from(output.try_clone().expect("emulator log")))
                .stderr(Stdio::from(output))
                .spawn()
                .expect("aws-lambda-rie starts (built by e2e/stack install)");
            emulators.push(child);
            listening.push(format!("127.0.0.1:{invoke_port}"));
            logs.insert(arn.to_string(), log);
            by_function.insert(arn.to_string(), format!("http://127.0.0.1:{invoke_port}"));
            let name = arn.rsplit(':').next().unwrap_or_default().to_string();
            by_function.insert(name, format!("http://127.0.0.1:{invoke_port}"));
        }
        let routes = Arc::new(Routes { by_function, http: reqwest::Client::new() });
        let app = axum::Router::new().route("/2015-03-31/functions/{function}/invocations", axum::routing::post(invoke)).with_state(routes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let proxy = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the Lambda proxy serves");
        });
        let emulators = std::sync::Mutex::new(emulators);
        let functions = LambdaFunctions { endpoint, emulators, listening, logs, proxy };
        functions.wait_ready().await;
        functions
    }

    /// The payloads the function `arn` was invoked with, oldest first.
    pub fn payloads(&self, arn: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.logs[arn]).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a payload line")).collect()
    }

    /// Every emulator accepts connections (the handler starts on the first invocation).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for address in &self.listening {
            while tokio::net::TcpStream::connect(address).await.is_err() {
                assert!(Instant::now() < deadline, "the Lambda emulator at {address} did not listen within 20s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn invoke(State(routes): State<Arc<Routes>>, Path(function): Path<String>, body: Bytes) -> Response {
    let Some(emulator) = routes.by_function.get(&function) else {
        let error = serde_json::json!({"Type": "User", "message": format!("Function not found: {function}")});
        return (StatusCode::NOT_FOUND, [("x-amzn-errortype", "ResourceNotFoundException")], error.to_string()).into_response();
    };
    let url = format!("{emulator}/2015-03-31/functions/function/invocations");
    match routes.http.post(url).body(body).send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let headers: Vec<(String, String)> = answer
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-amz"))
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
                .collect();
            let mut response = (status, answer.bytes().await.unwrap_or_default()).into_response();
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (name.parse::<axum::http::HeaderName>(), value.parse()) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl LambdaFunctions {
    /// Stops every emulator and its handler: each shares a process group of its own.
    pub fn stop(&self) {
        self.proxy.abort();
        let mut emulators = self.emulators.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for mut child in emulators.drain(..) {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for LambdaFunctions {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}
