//! One AWS SDK configuration for every client: the default credential chain (environment, IAM
//! roles for service accounts, EKS pod identity, profiles), the region from the environment or
//! profile, `AWS_ENDPOINT_URL` when set, the one rustls (ring) every other client uses, and
//! timeouts on every call, so an endpoint that accepts a connection and never answers fails the
//! pass instead of holding it forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// How long an AWS call may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole operation, every retry included.
    pub operation: Duration,
    /// One attempt (one HTTP request and its answer).
    pub attempt: Duration,
    /// Opening the TCP and TLS connection.
    pub connect: Duration,
}

impl Default for Timeouts {
    /// Generous for ELBv2, ECS and CloudWatch, whose calls answer in well under a second; the
    /// operation timeout leaves room for the standard mode's 3 attempts with backoff.
    fn default() -> Self {
        Timeouts { operation: Duration::from_secs(30), attempt: Duration::from_secs(10), connect: Duration::from_secs(3) }
    }
}

impl Timeouts {
    pub fn config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.operation)
            .operation_attempt_timeout(self.attempt)
            .connect_timeout(self.connect)
            .build()
    }
}

/// Clients of one AWS service built from the shared configuration: the default region's, and one
/// per other region a resource names, made on first use and kept.
pub struct Regional<C> {
    config: SdkConfig,
    default: C,
    by_region: Mutex<HashMap<String, C>>,
    build: fn(&SdkConfig) -> C,
}

impl<C: Clone> Regional<C> {
    /// `build` makes a client from a configuration (the shared one, or it in another region).
    pub fn new(config: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        Self { config: config.clone(), default: build(config), by_region: Mutex::default(), build }
    }

    pub fn client(&self, region: Option<&str>) -> C {
        let Some(region) = region.filter(|r| Some(*r) != self.config.region().map(|d| d.as_ref())) else {
            return self.default.clone();
        };
        let mut clients = self.by_region.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let build = self.build;
        clients
            .entry(region.to_string())
            .or_insert_with(|| build(&self.config.to_builder().region(aws_config::Region::new(region.to_string())).build()))
            .clone()
    }

    /// The region of the default client, if the configuration has one.
    pub fn default_region(&self) -> Option<&str> {
        self.config.region().map(|r| r.as_ref())
    }
}

/// Installs the process-wide rustls crypto provider; harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The configuration the controller builds its AWS clients from, once, at start.
pub async fn sdk_config() -> SdkConfig {
    install_crypto_provider();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http).timeout_config(Timeouts::default().config()).load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_an_operation_an_attempt_and_a_connect_timeout() {
        let config = Timeouts::default().config();
        assert_eq!(config.operation_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(config.operation_attempt_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(config.connect_timeout(), Some(Duration::from_secs(3)));
    }
}
