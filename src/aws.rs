//! One AWS SDK configuration for every client: the default credential chain (environment, IAM
//! roles for service accounts, EKS pod identity, profiles), the region from the environment or
//! profile, `AWS_ENDPOINT_URL` when set, and the one rustls (ring) every other client uses.

use aws_config::{BehaviorVersion, SdkConfig};

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
    aws_config::defaults(BehaviorVersion::latest()).http_client(http).load().await
}
