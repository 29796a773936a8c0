//! Traffic routers: how the split between stable and canary is set and read back.
//! Without a router the split follows the replica ratio and nothing is called.
//!
//! [`AwsFailure`] classifies a failed AWS call once, for the ALB router and the ECS platform
//! alike, into the bounded categories their errors report.

pub mod alb;
pub mod ingress;

use crate::engine::{TargetGroups, TrafficObservation};
use crate::ports::{Effect, PortError, TrafficRouter};

/// No router: the split follows the replica ratio, so there is nothing to read or set. The
/// engine never asks it for weights or routes (validation requires `traffic.alb` for those).
pub struct ReplicaRatio;

fn no_router(what: &str) -> PortError {
    PortError::new("traffic", "unsupported", format!("{what} needs spec.traffic.alb: without a router traffic follows the replica ratio"))
}

#[async_trait::async_trait]
impl TrafficRouter for ReplicaRatio {
    async fn observe(&self, _target_groups: Option<&TargetGroups>) -> Result<Option<TrafficObservation>, PortError> {
        Ok(None)
    }

    async fn set_weight(&self, _target_groups: &TargetGroups, _canary_weight: i32, _reclaim: bool) -> Result<Effect, PortError> {
        Err(no_router("a canary weight"))
    }

    async fn route_test_traffic(&self, _target_group: &str) -> Result<Effect, PortError> {
        Err(no_router("a test route"))
    }

    async fn route_headers(&self, _routes: &[crate::api::SetHeaderRoute], _target_group: Option<&str>) -> Result<Effect, PortError> {
        Err(no_router("a header route"))
    }
}

use aws_sdk_elasticloadbalancingv2::config::http::HttpResponse;
use aws_sdk_elasticloadbalancingv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Error codes AWS services use when a caller exceeds its request rate.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

/// Error codes of a missing resource (ELBv2 and ECS).
const NOT_FOUND_CODES: &[&str] = &[
    "ListenerNotFound",
    "RuleNotFound",
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "TaskSetNotFoundException",
];

/// Error codes of a request AWS refused as wrong or not allowed: a person has to fix something.
const REFUSED_CODES: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"];

/// What kind of failure an AWS call ended in, after the SDK's own retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The request rate was exceeded on every attempt.
    Throttled,
    /// AWS answered 5xx on every attempt.
    ServerError,
    /// The named resource does not exist.
    NotFound,
    /// AWS refused the request (4xx): a wrong parameter or a missing permission.
    Refused,
    /// No answer within the operation or attempt timeout (see `crate::aws::Timeouts`).
    TimedOut,
    /// No answer (connection, credentials) or an answer that could not be read.
    Unexpected,
}

/// One failed AWS call, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} {}", self.describe())]
pub struct AwsFailure {
    /// "ELBv2" or "ECS".
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: FailureKind,
    /// The AWS error code, when AWS sent one.
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of the last attempt, when there was an answer.
    pub status: Option<u16>,
}

impl AwsFailure {
    /// Classifies an SDK error (ELBv2 and ECS share the SDK's error types).
    pub fn from_sdk<E>(service: &'static str, operation: &'static str, error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().map(str::to_string);
        let message = match (error.message(), status) {
            (Some(m), _) => m.to_string(),
            (None, Some(_)) => "no error message in the answer".to_string(),
            // No answer at all: connection, timeout, credentials. The chain of causes says which.
            (None, None) => DisplayErrorContext(error).to_string(),
        };
        let kind = match (code.as_deref(), status) {
            _ if matches!(error, SdkError::TimeoutError(_)) => FailureKind::TimedOut,
            (Some(c), _) if THROTTLING_CODES.contains(&c) => FailureKind::Throttled,
            (_, Some(429)) => FailureKind::Throttled,
            (Some(c), _) if NOT_FOUND_CODES.contains(&c) => FailureKind::NotFound,
            (_, Some(s)) if s >= 500 => FailureKind::ServerError,
            (Some(c), _) if REFUSED_CODES.contains(&c) => FailureKind::Refused,
            (_, Some(s)) if (400..500).contains(&s) => FailureKind::Refused,
            _ => FailureKind::Unexpected,
        };
        AwsFailure { service, operation, kind, code, message, status }
    }

    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self.kind {
            FailureKind::Throttled => "throttled",
            FailureKind::ServerError => "aws_5xx",
            FailureKind::NotFound => "not_found",
            FailureKind::Refused => "invalid",
            FailureKind::TimedOut => "timeout",
            FailureKind::Unexpected => "unexpected",
        }
    }

    fn describe(&self) -> String {
        let code = self.code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
        let status = self.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
        match self.kind {
            FailureKind::Throttled => format!(
                "was throttled on every attempt ({status}{code}{}); the account's request rate is shared with other tools: \
                 Sluice will try again on the next pass (raise AWS_MAX_ATTEMPTS to retry longer)",
                self.message
            ),
            FailureKind::ServerError => {
                format!(
                    "failed on every attempt with a server error ({status}{code}{}); Sluice will try again on the next pass",
                    self.message
                )
            }
            FailureKind::NotFound => format!("found no such resource ({code}{}); check the ARNs and names in the Rollout", self.message),
            FailureKind::Refused => format!(
                "was refused ({status}{code}{}); fix the Rollout or the controller's IAM permissions (see docs/iam.md)",
                self.message
            ),
            FailureKind::TimedOut => {
                format!("got no answer within its timeout ({}); Sluice will try again on the next pass", self.message)
            }
            FailureKind::Unexpected => format!("failed without a usable answer from AWS: {}", self.message),
        }
    }
}
