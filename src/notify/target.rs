//! Where notifications go: webhook URLs (JSON or Slack-compatible), SNS topics and EventBridge
//! buses, written in the same lists (the controller's flag or file, a Rollout's annotation).

use std::path::Path;

use kube::ResourceExt;

use crate::api::Rollout;
use crate::egress::redact;

/// Comma-separated destinations notified of this Rollout's events, besides the controller's own:
/// webhook URLs, SNS topic ARNs and EventBridge bus ARNs.
pub const ANNOTATION: &str = "sluice.dev/notify-webhook";
/// A URL written `slack+https://...` gets a Slack-compatible payload.
const SLACK_PREFIX: &str = "slack+";

/// What a destination is, and so what it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sink {
    /// A webhook URL POSTed the JSON payload.
    Json,
    /// A webhook URL POSTed a Slack-compatible `{"text"}`.
    Slack,
    /// An SNS topic published a CDEvent.
    Sns,
    /// An EventBridge bus put a CDEvent.
    EventBridge,
}

impl Sink {
    /// Whether it is reached through the AWS SDK rather than over HTTP by the egress policy.
    pub fn is_aws(self) -> bool {
        matches!(self, Sink::Sns | Sink::EventBridge)
    }
}

/// A destination: a webhook URL (without its `slack+` prefix) or an AWS ARN.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub address: String,
    pub sink: Sink,
}

/// Never a URL's path or query: they carry tokens.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("address", &self.redacted()).field("sink", &self.sink).finish()
    }
}

impl Target {
    /// The address as it may be logged: an ARN whole, a URL's scheme and host only.
    pub fn redacted(&self) -> String {
        if self.sink.is_aws() {
            return self.address.clone();
        }
        reqwest::Url::parse(&self.address).map_or_else(|_| "(not a URL)".to_string(), |url| redact(&url))
    }

    /// The region of an ARN, which its client must call.
    pub fn region(&self) -> Option<&str> {
        self.sink.is_aws().then(|| self.address.split(':').nth(3)).flatten()
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// Problems never quote a URL, which may hold a token; ARNs hold none.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("arn:") {
            return aws_target(text);
        }
        let (sink, url) = match text.strip_prefix(SLACK_PREFIX) {
            Some(url) => (Sink::Slack, url),
            None => (Sink::Json, text),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            format!("a webhook URL does not parse ({e}); write http(s)://host/path, or an SNS topic or EventBridge bus ARN")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "a webhook URL of scheme {} is not an http(s) URL (prefix it with slack+ for a Slack-compatible payload)",
                parsed.scheme()
            ));
        }
        Ok(Target { address: url.to_string(), sink })
    }
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC` or `arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME`.
fn aws_target(arn: &str) -> Result<Target, String> {
    let expected = "write arn:aws:sns:REGION:ACCOUNT:TOPIC or arn:aws:events:REGION:ACCOUNT:event-bus/NAME";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("{arn} is not a whole ARN; {expected}"));
    };
    let named = |name: &str, extra: &[char]| {
        (1..=256).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c) || extra.contains(&c))
    };
    let region_ok = !region.is_empty() && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if partition.is_empty() || !region_ok || account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{arn} needs a partition, a region and a 12-digit account; {expected}"));
    }
    match *service {
        "sns" => {
            let topic = resource.strip_suffix(".fifo").unwrap_or(resource);
            named(topic, &[]).then_some(Sink::Sns).ok_or_else(|| format!("{arn} does not name an SNS topic; {expected}"))
        }
        "events" => resource
            .strip_prefix("event-bus/")
            .filter(|bus| named(bus, &['.', '/']))
            .map(|_| Sink::EventBridge)
            .ok_or_else(|| format!("{arn} does not name an EventBridge bus; {expected}")),
        other => Err(format!("{arn} is an ARN of {other}, which Sluice cannot notify; {expected}")),
    }
    .map(|sink| Target { address: arn.to_string(), sink })
}

/// The destinations in a file (mounted from a Secret): one per line or comma-separated; blank
/// lines and lines starting with `#` are skipped.
pub fn targets_in_file(path: &Path) -> Result<Vec<Target>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the webhooks file {}: {e}", path.display()))?;
    let mut targets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().starts_with('#') {
            continue;
        }
        for entry in line.split(',').filter(|e| !e.trim().is_empty()) {
            targets.push(entry.parse().map_err(|problem| format!("{}, line {}: {problem}", path.display(), number + 1))?);
        }
    }
    Ok(targets)
}

/// The destinations of a Rollout's annotation; the ones that do not parse are reported.
pub fn targets_of(rollout: &Rollout) -> (Vec<Target>, Vec<String>) {
    let Some(value) = rollout.annotations().get(ANNOTATION) else { return (Vec::new(), Vec::new()) };
    let (mut targets, mut problems) = (Vec::new(), Vec::new());
    for entry in value.split(',').filter(|e| !e.trim().is_empty()) {
        match entry.parse() {
            Ok(target) => targets.push(target),
            Err(problem) => problems.push(problem),
        }
    }
    (targets, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout_with(annotation: &str) -> Rollout {
        let mut rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workload": {}, "strategy": {}}
        }))
        .unwrap();
        rollout.metadata.annotations = Some([(ANNOTATION.to_string(), annotation.to_string())].into());
        rollout
    }

    #[test]
    fn targets_are_json_unless_prefixed_with_slack() {
        assert_eq!("https://hooks.example.com/a".parse(), Ok(Target { address: "https://hooks.example.com/a".into(), sink: Sink::Json }));
        assert_eq!(
            " slack+https://hooks.slack.com/services/T/B/X".parse(),
            Ok(Target { address: "https://hooks.slack.com/services/T/B/X".into(), sink: Sink::Slack })
        );
        assert!("ftp://example.com".parse::<Target>().unwrap_err().contains("not an http(s) URL"));
        assert!("not a url".parse::<Target>().is_err());
        let problem = "ftp://hooks.test/T0/B0/token".parse::<Target>().unwrap_err();
        assert!(!problem.contains("token"), "problems never quote the URL: {problem}");
        let target: Target = "slack+https://hooks.slack.com/services/T0/B0/token?x=1".parse().unwrap();
        assert_eq!(format!("{target:?}"), r#"Target { address: "https://hooks.slack.com", sink: Slack }"#);

        let (targets, problems) = targets_of(&rollout_with("http://a.test/x, slack+https://b.test/y,,bogus"));
        assert_eq!(
            targets.iter().map(|t| (t.address.as_str(), t.sink)).collect::<Vec<_>>(),
            [("http://a.test/x", Sink::Json), ("https://b.test/y", Sink::Slack)]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn sns_topics_and_eventbridge_buses_are_named_by_their_arns_with_the_region_to_call() {
        let topic: Target = "arn:aws:sns:eu-west-1:123456789012:deploys".parse().unwrap();
        assert_eq!((topic.sink, topic.region()), (Sink::Sns, Some("eu-west-1")));
        assert_eq!(format!("{topic:?}"), r#"Target { address: "arn:aws:sns:eu-west-1:123456789012:deploys", sink: Sns }"#);
        let fifo: Target = "arn:aws:sns:us-east-1:123456789012:deploys.fifo".parse().unwrap();
        assert_eq!(fifo.sink, Sink::Sns);
        let bus: Target = "arn:aws-cn:events:cn-north-1:123456789012:event-bus/delivery.prod".parse().unwrap();
        assert_eq!((bus.sink, bus.region()), (Sink::EventBridge, Some("cn-north-1")));
        assert_eq!("https://a.test/x".parse::<Target>().unwrap().region(), None);

        for (bad, says) in [
            ("arn:aws:sns:us-east-1:123456789012", "not a whole ARN"),
            ("arn:aws:sns:us-east-1:1234:deploys", "12-digit account"),
            ("arn:aws:sns::123456789012:deploys", "a region"),
            ("arn:aws:sns:us-east-1:123456789012:a:b", "does not name an SNS topic"),
            ("arn:aws:events:us-east-1:123456789012:rule/deploys", "does not name an EventBridge bus"),
            ("arn:aws:sqs:us-east-1:123456789012:deploys", "an ARN of sqs"),
        ] {
            let problem = bad.parse::<Target>().unwrap_err();
            assert!(problem.contains(says), "{bad}: {problem}");
        }

        let (targets, problems) = targets_of(&rollout_with(
            "https://a.test/x, arn:aws:sns:us-east-1:123456789012:t, arn:aws:events:us-east-1:123456789012:event-bus/b",
        ));
        assert_eq!(targets.iter().map(|t| t.sink).collect::<Vec<_>>(), [Sink::Json, Sink::Sns, Sink::EventBridge]);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
