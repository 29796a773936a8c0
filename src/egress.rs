//! Where Sluice may send HTTP requests on behalf of what users write (web and Prometheus metrics,
//! webhooks), and how much it reads back.
//!
//! A cluster admin lists allowed hosts (`--allow-host`, repeatable); a Namespace's
//! [`NAMESPACE_ANNOTATION`] (set by the admin, who alone may edit Namespaces) extends the list for
//! that namespace. With no list at all, any host is allowed except loopback, link-local, metadata
//! and unspecified addresses, which are reached only when a pattern names them explicitly.
//!
//! The host is resolved here, every address is checked, and the request is pinned to the checked
//! addresses (no second lookup that DNS rebinding could answer differently). Redirects are never
//! followed, proxies from the environment are ignored, and answers are read up to a limit.

use crate::text::size;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Namespace;
use reqwest::Url;

/// Set by a cluster admin on a Namespace: more allowed hosts (comma-separated patterns) for the
/// metrics and webhooks of that namespace.
pub const NAMESPACE_ANNOTATION: &str = "sluice.dev/allowed-hosts";
/// The most an answer (web metric, webhook) may be by default.
pub const DEFAULT_MAX_ANSWER: usize = 1 << 20;
/// How long a Namespace's annotation is trusted before it is read again.
const NAMESPACE_TTL: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// One entry of an allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host whose addresses are not denied (the default when nothing is listed).
    Any,
    /// `prometheus.monitoring.svc`, optionally `:9090`: this host, whatever it resolves to.
    Name { name: String, port: Option<u16> },
    /// `*.example.com`: hosts under this domain, as long as their addresses are not denied (a
    /// wildcard never opens loopback or metadata addresses).
    Suffix { suffix: String, port: Option<u16> },
    /// `10.0.0.0/8`, `127.0.0.1:9090`, `[fd00::1]:80`: these addresses, even denied ones.
    Net { net: IpNet, port: Option<u16> },
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let pattern = text.trim().to_ascii_lowercase();
        let problem = |why: &str| {
            format!(
                "allowed host `{text}` {why}; write a host (prometheus.monitoring.svc), a wildcard (*.example.com), an address or network (10.0.0.0/8), each optionally with :PORT, or *"
            )
        };
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if pattern.is_empty() {
            return Err(problem("is empty"));
        }
        let (host, port) = split_port(&pattern).map_err(|why| problem(&why))?;
        if let Ok(net) = host.parse::<IpNet>() {
            return Ok(Self::Net { net: net.trunc(), port });
        }
        if let Ok(address) = host.parse::<IpAddr>() {
            return Ok(Self::Net { net: IpNet::from(address), port });
        }
        let (name, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (host, false),
        };
        let name = name.trim_end_matches('.');
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(problem("is not a host name"));
        }
        Ok(if wildcard { Self::Suffix { suffix: name.to_string(), port } } else { Self::Name { name: name.to_string(), port } })
    }
}

/// `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address or network, or a host.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| p.parse::<u16>().map(Some).map_err(|_| format!("has a port `{p}` that is not a number 0-65535"));
    if let Some(rest) = pattern.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("opens [ without closing it")?;
        return match after {
            "" => Ok((host, None)),
            _ => Ok((host, parse_port(after.strip_prefix(':').ok_or("has text after ]")?)?)),
        };
    }
    match pattern.matches(':').count() {
        0 => Ok((pattern, None)),
        1 => {
            let (host, port) = pattern.split_once(':').expect("one colon");
            Ok((host, parse_port(port)?))
        }
        _ => Ok((pattern, None)),
    }
}

/// Patterns separated by commas (the annotation, the environment variable).
pub fn parse_list(text: &str) -> Result<Vec<HostPattern>, String> {
    text.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
}

/// Who may be reached: allowed patterns, and whether unlisted hosts are open (no list, or `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    open: bool,
    patterns: Vec<HostPattern>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Policy {
    /// The cluster's policy: with no patterns, any host whose addresses are not denied.
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        let open = patterns.is_empty() || patterns.contains(&HostPattern::Any);
        Self { open, patterns }
    }

    /// This policy with a namespace's own patterns added.
    pub fn extended(&self, more: &[HostPattern]) -> Self {
        let open = self.open || more.contains(&HostPattern::Any);
        Self { open, patterns: self.patterns.iter().chain(more).cloned().collect() }
    }

    /// Whether `host` (a name or an address literal), at `port`, may be reached at `address`.
    pub fn admits(&self, host: &str, port: u16, address: IpAddr) -> Result<(), String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let port_ok = |wanted: &Option<u16>| wanted.is_none_or(|p| p == port);
        let explicit = self.patterns.iter().any(|pattern| match pattern {
            HostPattern::Name { name, port } => *name == host && port_ok(port),
            HostPattern::Net { net, port } => net.contains(&canonical(address)) && port_ok(port),
            HostPattern::Any | HostPattern::Suffix { .. } => false,
        });
        if explicit {
            return Ok(());
        }
        if let Some(kind) = denied(address) {
            let named = if host == address.to_string() { format!("{address}") } else { format!("{host} resolves to {address}, which") };
            return Err(format!(
                "{named} is a {kind} address; Sluice does not connect to {kind} addresses unless the cluster admin lists them (--allow-host {}, or the namespace's {NAMESPACE_ANNOTATION} annotation)",
                listing(address, port)
            ));
        }
        let by_suffix = self.patterns.iter().any(|pattern| match pattern {
            HostPattern::Suffix { suffix, port } => host.ends_with(&format!(".{suffix}")) && port_ok(port),
            _ => false,
        });
        if self.open || by_suffix {
            return Ok(());
        }
        Err(format!(
            "{host}:{port} is not an allowed host; ask the cluster admin to list it (--allow-host {host}) or to add it to the namespace's {NAMESPACE_ANNOTATION} annotation"
        ))
    }
}

fn listing(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is denied unless listed, if it is.
fn denied(address: IpAddr) -> Option<&'static str> {
    const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    const METADATA_ALIBABA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    match canonical(address) {
        IpAddr::V4(v4) if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == METADATA_ALIBABA => Some("instance metadata"),
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.octets()[0] == 0 || v4.is_broadcast() => Some("unspecified"),
        IpAddr::V6(v6) if v6 == METADATA_V6 => Some("instance metadata"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        _ => None,
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The policy does not allow this destination.
    #[error("{0}")]
    Denied(String),
    /// The host does not resolve.
    #[error("{0}")]
    Unresolvable(String),
    /// The URL cannot be used (no host, not http(s)).
    #[error("{0}")]
    Invalid(String),
}

/// The allowed hosts of each namespace, read from the Namespace's annotation and cached briefly.
struct NamespaceHosts {
    kube: Option<kube::Client>,
    cache: Mutex<HashMap<String, (Instant, Vec<HostPattern>)>>,
}

impl NamespaceHosts {
    async fn of(&self, namespace: &str) -> Vec<HostPattern> {
        if let Some((read, patterns)) = self.cache.lock().expect("cache lock").get(namespace)
            && read.elapsed() < NAMESPACE_TTL
        {
            return patterns.clone();
        }
        let Some(client) = &self.kube else { return Vec::new() };
        let api: kube::Api<Namespace> = kube::Api::all(client.clone());
        let patterns = match api.get_opt(namespace).await {
            Ok(Some(object)) => match object.metadata.annotations.as_ref().and_then(|a| a.get(NAMESPACE_ANNOTATION)) {
                None => Vec::new(),
                Some(text) => parse_list(text).unwrap_or_else(|problem| {
                    tracing::warn!(%namespace, annotation = NAMESPACE_ANNOTATION, "ignored: {problem}");
                    Vec::new()
                }),
            },
            Ok(None) => Vec::new(),
            Err(error) => {
                // Without the annotation the cluster's list applies, which is never wider.
                tracing::warn!(%namespace, %error, "cannot read the Namespace's {NAMESPACE_ANNOTATION}; using the cluster's allowed hosts");
                Vec::new()
            }
        };
        self.cache.lock().expect("cache lock").insert(namespace.to_string(), (Instant::now(), patterns.clone()));
        patterns
    }
}

/// The outbound HTTP policy: build it once and share it.
pub struct Egress {
    cluster: Policy,
    namespaces: NamespaceHosts,
    max_answer: usize,
}

impl Egress {
    /// `kube` reads Namespaces for their annotation; without it only the cluster's list applies.
    pub fn new(cluster: Policy, kube: Option<kube::Client>, max_answer: usize) -> Self {
        Self { cluster, namespaces: NamespaceHosts { kube, cache: Mutex::default() }, max_answer }
    }

    /// The most an answer may be, in bytes.
    pub fn max_answer(&self) -> usize {
        self.max_answer
    }

    /// The policy for requests made for `namespace` (the cluster's alone without one).
    pub async fn policy(&self, namespace: Option<&str>) -> Policy {
        match namespace {
            Some(namespace) => self.cluster.extended(&self.namespaces.of(namespace).await),
            None => self.cluster.clone(),
        }
    }

    /// A client for requests to `url`'s host made for `namespace`: the host resolved and every
    /// address checked, requests pinned to those addresses, no redirects, no proxy.
    pub async fn client(&self, namespace: Option<&str>, url: &Url) -> Result<reqwest::Client, EgressError> {
        let policy = self.policy(namespace).await;
        let addresses = checked(&policy, url).await?;
        let builder = reqwest::Client::builder().user_agent(USER_AGENT).redirect(reqwest::redirect::Policy::none()).no_proxy();
        let builder = match url.host_str() {
            Some(host) if literal(host).is_none() => builder.resolve_to_addrs(host, &addresses),
            _ => builder,
        };
        builder.build().map_err(|e| EgressError::Invalid(format!("cannot build an HTTP client: {e}")))
    }
}

/// Resolves `url`'s host and checks every address; the addresses requests may use.
pub async fn checked(policy: &Policy, url: &Url) -> Result<Vec<SocketAddr>, EgressError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EgressError::Invalid(format!("{} is not an http(s) URL", redact(url))));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.host_str() else {
        return Err(EgressError::Invalid(format!("`{}` has no host", redact(url))));
    };
    let (host, addresses) = match literal(host) {
        Some(address) => (address.to_string(), vec![SocketAddr::new(address, port)]),
        None => {
            let domain = host;
            let found: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
                .await
                .map_err(|e| EgressError::Unresolvable(format!("cannot resolve {domain}: {e}")))?
                .collect();
            if found.is_empty() {
                return Err(EgressError::Unresolvable(format!("{domain} resolves to no address")));
            }
            (domain.to_string(), found)
        }
    };
    for address in &addresses {
        policy.admits(&host, port, address.ip()).map_err(EgressError::Denied)?;
    }
    Ok(addresses)
}

/// The address a URL's host names literally (`10.0.0.1`, `[::1]`), if it does.
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Why an answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer larger than {}", size(*.0))]
    TooLarge(usize),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The body of `response`, refused as soon as it grows past `max` bytes.
pub async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|length| length > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line ("error sending request: …: Connection refused").
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A URL as it may be logged: scheme, host and port; never the path or query (they carry tokens).
pub fn redact(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("{}:…", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> Policy {
        Policy::new(patterns.iter().map(|p| p.parse().unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn patterns_parse_and_bad_ones_say_what_to_write() {
        assert_eq!("*".parse(), Ok(HostPattern::Any));
        assert_eq!(
            "Prometheus.Monitoring.svc:9090".parse(),
            Ok(HostPattern::Name { name: "prometheus.monitoring.svc".into(), port: Some(9090) })
        );
        assert_eq!("*.example.com".parse(), Ok(HostPattern::Suffix { suffix: "example.com".into(), port: None }));
        assert_eq!("10.1.2.3/8".parse(), Ok(HostPattern::Net { net: "10.0.0.0/8".parse().unwrap(), port: None }));
        assert_eq!("127.0.0.1:9090".parse(), Ok(HostPattern::Net { net: "127.0.0.1/32".parse().unwrap(), port: Some(9090) }));
        assert_eq!("[::1]:80".parse(), Ok(HostPattern::Net { net: "::1/128".parse().unwrap(), port: Some(80) }));
        assert_eq!("fd00::/8".parse(), Ok(HostPattern::Net { net: "fd00::/8".parse().unwrap(), port: None }));
        for bad in ["", "a b", "host:http", "[::1", "*.", "a..b"] {
            let problem = bad.parse::<HostPattern>().unwrap_err();
            assert!(problem.contains("write a host"), "{bad}: {problem}");
        }
        assert_eq!(parse_list("a.svc, ,10.0.0.0/8").unwrap().len(), 2);
    }

    #[test]
    fn by_default_public_and_cluster_hosts_are_open_and_local_ones_denied() {
        let open = Policy::default();
        assert_eq!(open.admits("example.com", 443, ip("93.184.216.34")), Ok(()));
        assert_eq!(open.admits("prometheus.monitoring.svc", 9090, ip("10.96.0.12")), Ok(()));
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "instance metadata"),
            ("fd00:ec2::254", "instance metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            let problem = open.admits("evil.example", 80, ip(address)).unwrap_err();
            assert!(problem.contains(&format!("a {kind} address")), "{address}: {problem}");
            assert!(problem.contains("--allow-host"), "{problem}");
        }
    }

    #[test]
    fn listed_addresses_and_names_open_denied_ranges_but_wildcards_do_not() {
        let listed = policy(&["127.0.0.1:9090", "metadata.internal", "*.example.com"]);
        assert_eq!(listed.admits("127.0.0.1", 9090, ip("127.0.0.1")), Ok(()));
        assert!(listed.admits("127.0.0.1", 22, ip("127.0.0.1")).is_err(), "only the listed port");
        assert_eq!(listed.admits("metadata.internal", 80, ip("169.254.169.254")), Ok(()));
        assert_eq!(listed.admits("api.example.com", 443, ip("93.184.216.34")), Ok(()));
        assert!(listed.admits("rebind.example.com", 80, ip("127.0.0.1")).unwrap_err().contains("loopback"));
        let problem = listed.admits("other.test", 80, ip("93.184.216.34")).unwrap_err();
        assert!(problem.contains("not an allowed host"), "a list closes the rest: {problem}");
        assert_eq!(listed.extended(&["*".parse().unwrap()]).admits("other.test", 80, ip("93.184.216.34")), Ok(()));
        let namespace = Policy::default().extended(&["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(namespace.admits("localhost", 8080, ip("127.0.0.1")), Ok(()));
        assert_eq!(namespace.admits("example.com", 443, ip("93.184.216.34")), Ok(()), "extending keeps the default open");
    }

    #[tokio::test]
    async fn literal_and_resolved_hosts_are_checked_before_any_request() {
        let url = |text: &str| Url::parse(text).unwrap();
        let denied = checked(&Policy::default(), &url("http://127.0.0.1:9/x")).await.unwrap_err();
        assert!(matches!(denied, EgressError::Denied(_)), "{denied}");
        let denied = checked(&Policy::default(), &url("http://localhost:9/x")).await.unwrap_err();
        assert!(denied.to_string().contains("localhost resolves to"), "{denied}");
        let denied = checked(&Policy::default(), &url("http://[fd00:ec2::254]/latest")).await.unwrap_err();
        assert!(denied.to_string().contains("instance metadata"), "{denied}");
        assert!(checked(&policy(&["127.0.0.1"]), &url("http://127.0.0.1:9/x")).await.is_ok());
        assert!(matches!(checked(&Policy::default(), &url("file:///etc/passwd")).await, Err(EgressError::Invalid(_))));
    }

    #[test]
    fn urls_are_redacted() {
        let url = Url::parse("https://hooks.slack.com/services/T0/B0/secret?token=x").unwrap();
        assert_eq!(redact(&url), "https://hooks.slack.com");
        assert_eq!(redact(&Url::parse("http://10.0.0.1:8080/a").unwrap()), "http://10.0.0.1:8080");
    }
}
