//! Prometheus: an instant query at `now`, or a range query over `range.window` ending at `now`;
//! and, for a metric with a judge, the range queries of both sides, judged.

use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use jiff::Timestamp;
use prometheus_http_query::error::PrometheusError;
use prometheus_http_query::response::{Data, PromqlResult};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::{ProviderError, chain, egress_error, finite, http_error, read_answer, secret};
use crate::analysis::condition::MeasuredValue;
use crate::analysis::judge::{self, Counts, Verdict};
use crate::api::{MetricJudge, PrometheusMetric, PrometheusRange};
use crate::egress::Egress;

type Header = Option<(HeaderName, HeaderValue)>;

/// The most a Prometheus answer may be: large vectors are judged (and stored cut short), but an
/// endless answer is refused.
pub const MAX_ANSWER: usize = 16 << 20;

/// The Prometheus HTTP API's envelope.
#[derive(serde::Deserialize)]
#[serde(tag = "status")]
enum Envelope {
    #[serde(rename = "success")]
    Success { data: PromqlResult },
    #[serde(rename = "error")]
    Error(PrometheusError),
}

/// One measurement: an instant query gives a number (one sample) or a vector (several); a range
/// query gives the vector of every sample of every series. No samples, or only NaN/±Inf: no data.
pub async fn measure(
    access: &Access<'_>,
    spec: &PrometheusMetric,
    now: Timestamp,
    timeout: Duration,
) -> Result<MeasuredValue, ProviderError> {
    let server = Server::new(access, spec, timeout).await?;
    match &spec.range {
        None => server.instant(&spec.query, now).await,
        Some(range) => Ok(MeasuredValue::vector(server.range(&spec.query, "query", range, now).await?)),
    }
}

/// A judged measurement: the canary's samples (the provider's query) against the baseline's.
/// The value is the judgement as a document (`result.verdict`); too few samples is no data.
pub async fn judged(
    access: &Access<'_>,
    spec: &PrometheusMetric,
    judge_spec: &MetricJudge,
    now: Timestamp,
    timeout: Duration,
) -> Result<MeasuredValue, ProviderError> {
    let Some(range) = &spec.range else {
        return Err(ProviderError::Config("a judge compares samples over a range: set provider.prometheus.range (window and step)".into()));
    };
    let server = Server::new(access, spec, timeout).await?;
    let settings = judge::Settings::of(judge_spec);
    let judgement = match &judge_spec.totals {
        None => {
            let (baseline, canary) = futures::try_join!(
                server.range(&judge_spec.baseline_query, "judge.baselineQuery", range, now),
                server.range(&spec.query, "query", range, now),
            )?;
            judge::compare(&baseline, &canary, &settings)
        }
        Some(totals) => {
            let (baseline_events, canary_events, baseline_trials, canary_trials) = futures::try_join!(
                server.range(&judge_spec.baseline_query, "judge.baselineQuery", range, now),
                server.range(&spec.query, "query", range, now),
                server.range(&totals.baseline_query, "judge.totals.baselineQuery", range, now),
                server.range(&totals.canary_query, "judge.totals.canaryQuery", range, now),
            )?;
            let sum = |values: Vec<f64>| values.iter().sum::<f64>();
            judge::compare_proportions(
                Counts { events: sum(baseline_events), trials: sum(baseline_trials) },
                Counts { events: sum(canary_events), trials: sum(canary_trials) },
                &settings,
            )
        }
    };
    if judgement.verdict == Verdict::NoData {
        tracing::info!(address = %spec.address, "judge has no data: {}", judgement.message);
        return Ok(MeasuredValue::NoData);
    }
    Ok(MeasuredValue::Json(judgement.to_json()))
}

/// The controller's AWS identity and region, for queries signed with SigV4.
#[derive(Clone, Debug, Default)]
pub struct AwsSigning {
    pub credentials: Option<SharedCredentialsProvider>,
    pub region: Option<String>,
}

/// What a query may use to reach its server: the outbound policy, the AWS identity to sign
/// with, and the Secrets of the rollout's namespace.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub egress: &'a Egress,
    pub signing: &'a AwsSigning,
    pub kube: Option<&'a kube::Client>,
    pub namespace: &'a str,
}

/// How a metric's queries are signed: the credentials, region and signing name.
struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
    service: String,
}

/// Characters a SigV4 canonical query leaves as they are; every other byte is percent-encoded,
/// so the query sent is already in canonical form.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A Prometheus server as one metric reaches it: the shared HTTP client, its header or signer,
/// its timeout.
struct Server {
    http: reqwest::Client,
    address: String,
    header: Header,
    signer: Option<Signer>,
    timeout_ms: i64,
    max_answer: usize,
}

impl Server {
    /// The destination is checked before the Secret is read, so a denied address never sees it.
    async fn new(access: &Access<'_>, spec: &PrometheusMetric, timeout: Duration) -> Result<Self, ProviderError> {
        let Access { egress, signing, kube, namespace } = *access;
        let url = reqwest::Url::parse(&spec.address)
            .map_err(|e| ProviderError::Config(format!("prometheus address `{}` is not a valid URL: {e}", spec.address)))?;
        let what = format!("prometheus at {}", spec.address);
        let http = egress.client(Some(namespace), &url).await.map_err(|e| egress_error(&what, e))?;
        let header = match &spec.auth_header {
            None => None,
            Some(auth) => {
                let value = secret::value(kube, namespace, &auth.secret_key_ref).await?;
                Some(secret::header(&auth.name, &value, true)?)
            }
        };
        let signer = match &spec.sigv4 {
            None => None,
            Some(sigv4) => {
                let credentials = signing.credentials.clone().ok_or_else(|| {
                    ProviderError::Config(format!("{what}: provider.prometheus.sigv4 needs AWS credentials, and the controller has none"))
                })?;
                let region = sigv4.region.clone().or_else(|| signing.region.clone()).ok_or_else(|| {
                    ProviderError::Config(format!("{what}: set provider.prometheus.sigv4.region: the controller has no AWS region"))
                })?;
                Some(Signer { credentials, region, service: sigv4.service.clone().unwrap_or_else(|| SIGV4_SERVICE.into()) })
            }
        };
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let max_answer = egress.max_answer().max(MAX_ANSWER);
        Ok(Self { http, address: spec.address.clone(), header, signer, timeout_ms, max_answer })
    }

    /// `GET /api/v1/{endpoint}` with these parameters, with the metric's header or signature.
    async fn get(&self, endpoint: &str, params: &[(&str, String)]) -> Result<reqwest::Response, ProviderError> {
        let what = format!("prometheus at {}", self.address);
        let query: Vec<String> =
            params.iter().map(|(name, value)| format!("{name}={}", percent_encoding::utf8_percent_encode(value, UNRESERVED))).collect();
        let text = format!("{}/api/v1/{endpoint}?{}", self.address.trim_end_matches('/'), query.join("&"));
        let url = reqwest::Url::parse(&text)
            .map_err(|e| ProviderError::Config(format!("prometheus address `{}` is not a valid URL: {e}", self.address)))?;
        let mut request = self.http.get(url.clone());
        if let Some((name, value)) = &self.header {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(signer) = &self.signer {
            for (name, value) in signer.sign(&what, &url).await? {
                request = request.header(name, value);
            }
        }
        request.send().await.map_err(|e| http_error(&what, &e))
    }

    async fn instant(&self, query: &str, now: Timestamp) -> Result<MeasuredValue, ProviderError> {
        let time = format!("{:.3}", now.as_millisecond() as f64 / 1000.0);
        let params = [("query", query.to_string()), ("time", time), ("timeout", format!("{}ms", self.timeout_ms))];
        let data = self.answer("query", query, self.get("query", &params).await?).await?;
        Ok(match &data {
            Data::Scalar(sample) => finite(sample.value()),
            Data::Vector(vector) => {
                let values: Vec<f64> = vector.iter().map(|s| s.sample().value()).filter(|v| v.is_finite()).collect();
                match values.as_slice() {
                    [] => MeasuredValue::NoData,
                    [one] => MeasuredValue::scalar(*one),
                    _ => MeasuredValue::vector(values),
                }
            }
            Data::Matrix(matrix) => MeasuredValue::vector(
                matrix.iter().flat_map(|series| series.samples().iter().map(|s| s.value())).filter(|v| v.is_finite()).collect(),
            ),
        })
    }

    /// Every finite sample of every series of a range query over `window` ending at `now`.
    async fn range(&self, query: &str, field: &str, range: &PrometheusRange, now: Timestamp) -> Result<Vec<f64>, ProviderError> {
        let duration = |d: &crate::api::DurationString, name: &str| {
            d.to_duration().map_err(|e| ProviderError::Config(format!("provider.prometheus.range.{name}: {e}")))
        };
        let (window, step) = (duration(&range.window, "window")?, duration(&range.step, "step")?);
        if step.is_zero() {
            return Err(ProviderError::Config("provider.prometheus.range.step is 0: give a positive duration such as 30s".into()));
        }
        let end = now.as_second();
        let start = end - i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.as_secs_f64().to_string()),
            ("timeout", format!("{}ms", self.timeout_ms)),
        ];
        let data = self.answer(field, query, self.get("query_range", &params).await?).await?;
        Ok(match &data {
            Data::Matrix(matrix) => {
                matrix.iter().flat_map(|series| series.samples().iter().map(|s| s.value())).filter(|v| v.is_finite()).collect()
            }
            Data::Vector(vector) => vector.iter().map(|s| s.sample().value()).filter(|v| v.is_finite()).collect(),
            Data::Scalar(sample) => [sample.value()].into_iter().filter(|v| v.is_finite()).collect(),
        })
    }

    /// The data of an answer read within the size limit; a redirect or a refusal is an error.
    async fn answer(&self, field: &str, query: &str, response: reqwest::Response) -> Result<Data, ProviderError> {
        let what = format!("prometheus at {}", self.address);
        let status = response.status();
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
        let text = read_answer(&what, response, self.max_answer).await?;
        if !json {
            return Err(if status.is_success() {
                ProviderError::Response(format!(
                    "{what}: the answer is not JSON; is this the address of a Prometheus server (its HTTP API)?"
                ))
            } else {
                ProviderError::Status(format!("{what}: answered {status}"))
            });
        }
        match serde_json::from_str::<Envelope>(&text) {
            Ok(Envelope::Success { data }) => Ok(data.into_inner().0),
            Ok(Envelope::Error(e)) if e.is_timeout() => Err(ProviderError::Timeout(format!(
                "{what}: the server gave up evaluating {field} `{query}` within the timeout: {}; simplify the query or raise provider.prometheus.timeout",
                e.message()
            ))),
            Ok(Envelope::Error(e)) => {
                Err(ProviderError::Query(format!("{what}: {field} `{query}` refused: {}: {}", e.error_type(), e.message())))
            }
            Err(e) => Err(ProviderError::Response(format!(
                "{what}: the answer does not parse ({e}); is this the address of a Prometheus server (its HTTP API)?"
            ))),
        }
    }
}

impl Signer {
    /// The headers that sign a GET of `url` now (no body): `authorization`, `x-amz-date` and,
    /// with temporary credentials, `x-amz-security-token`.
    async fn sign(&self, what: &str, url: &reqwest::Url) -> Result<Vec<(String, String)>, ProviderError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| ProviderError::Config(format!("{what}: no AWS credentials to sign with: {}", chain(&e))))?;
        let identity = credentials.into();
        let settings = SigningSettings::default();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| ProviderError::Config(format!("{what}: cannot sign: {e}")))?
            .into();
        let host = url.host_str().unwrap_or_default();
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let signable = SignableRequest::new("GET", url.as_str(), [("host", host.as_str())].into_iter(), SignableBody::Bytes(&[]))
            .map_err(|e| ProviderError::Config(format!("{what}: cannot sign: {e}")))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|e| ProviderError::Config(format!("{what}: cannot sign: {e}")))?.into_parts();
        Ok(instructions.headers().map(|(name, value)| (name.to_string(), value.to_string())).collect())
    }
}

/// The name Amazon Managed Service for Prometheus signs for.
pub const SIGV4_SERVICE: &str = "aps";
