//! An AWS endpoint that accepts the connection and never answers: every call fails within its
//! timeouts with an error that says so, instead of holding the pass forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::api::{AlbTraffic, EcsWorkload};
use sluice::aws::Timeouts;
use sluice::platform::ecs::EcsPlatform;
use sluice::traffic::alb::AlbRouter;
use tokio::net::TcpListener;

use crate::fixtures;
use crate::support::Stack;

/// Short timeouts, so the test is quick; the controller's defaults are checked in `sluice::aws`.
const TIMEOUTS: Timeouts = Timeouts { operation: Duration::from_secs(3), attempt: Duration::from_secs(1), connect: Duration::from_secs(1) };

/// Accepts every connection and keeps it open without reading or writing a byte.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

fn config(endpoint: &str) -> aws_config::SdkConfig {
    fixtures::sdk(endpoint, 3).into_builder().timeout_config(TIMEOUTS.config()).build()
}

/// Fails unless `elapsed` lies between one attempt's timeout and the operation's (plus a margin
/// for a loaded machine).
fn within_the_timeouts(what: &str, elapsed: Duration) {
    assert!(elapsed >= TIMEOUTS.attempt, "{what} failed after {elapsed:?}, before an attempt could time out");
    assert!(elapsed < TIMEOUTS.operation + Duration::from_secs(2), "{what} took {elapsed:?}, past the operation timeout");
}

register_test!(130, a_silent_endpoint_fails_alb_and_ecs_calls_within_the_timeouts);
pub async fn a_silent_endpoint_fails_alb_and_ecs_calls_within_the_timeouts(_stack: Arc<Stack>) {
    let (endpoint, server) = silent_endpoint().await;

    let router = AlbRouter::new(&config(&endpoint));
    let alb = AlbTraffic {
        listener_arn: Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/1/2".into()),
        stable_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stable/1".into(),
        canary_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/canary/2".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let error = router.read(&alb, &alb.stable_target_group_arn, &alb.canary_target_group_arn).await.unwrap_err();
    println!("    ALB: [{}] {error} ({:?})", error.category(), started.elapsed());
    within_the_timeouts("DescribeListeners", started.elapsed());
    assert_eq!(error.category(), "timeout");
    assert!(error.to_string().contains("no answer within its timeout"), "the error says the call timed out: {error}");

    let platform = EcsPlatform::new(&config(&endpoint));
    let workload: EcsWorkload = serde_json::from_value(serde_json::json!({
        "cluster": "shop", "service": "checkout", "taskDefinition": "checkout:1", "desiredCount": 2,
        "loadBalancer": {"containerName": "app", "containerPort": 8080}
    }))
    .unwrap();
    let started = Instant::now();
    let error = platform.observe(&workload).await.unwrap_err();
    println!("    ECS: [{}] {error} ({:?})", error.category(), started.elapsed());
    within_the_timeouts("DescribeServices", started.elapsed());
    assert_eq!(error.category(), "timeout");
    assert!(error.to_string().contains("no answer within its timeout"), "the error says the call timed out: {error}");
    server.abort();
}
