//! Publishing CDEvents to SNS topics and EventBridge buses, with clients built from the
//! controller's shared `SdkConfig` in the region of each ARN.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_eventbridge as eventbridge;
use aws_sdk_sns as sns;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::target::{Sink, Target};

/// The EventBridge `Source` of every event.
pub const EVENT_SOURCE: &str = "sluice.dev";
/// The SNS message attribute that carries the CDEvent's `context.id`, for subscribers to drop
/// repeats (SQS and Lambda subscribers see it beside the message).
pub const ID_ATTRIBUTE: &str = "cdevents_id";
/// The SNS message attribute that carries the CDEvent's type, for subscription filter policies.
pub const TYPE_ATTRIBUTE: &str = "cdevents_type";

/// Shorter than the controller's other AWS calls: a notification is retried later anyway, and
/// its destination's queue waits meanwhile.
const TIMEOUTS: crate::aws::Timeouts =
    crate::aws::Timeouts { operation: Duration::from_secs(10), attempt: Duration::from_secs(3), connect: Duration::from_secs(3) };

/// Whether a namespace may publish to an ARN: the tenancy policy, which the controller supplies.
/// `Err` says what to fix.
pub trait AllowList: Send + Sync {
    fn check(&self, namespace: &str, arn: &str) -> Result<(), String>;
}

/// One SNS and one EventBridge client per region, made on first use.
pub struct Publisher {
    config: aws_config::SdkConfig,
    sns: Mutex<HashMap<String, sns::Client>>,
    eventbridge: Mutex<HashMap<String, eventbridge::Client>>,
}

impl Publisher {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let config = config.to_builder().timeout_config(TIMEOUTS.config()).build();
        Publisher { config, sns: Default::default(), eventbridge: Default::default() }
    }

    fn sns(&self, region: &str) -> sns::Client {
        let mut clients = self.sns.lock().expect("sns clients lock");
        let config = sns::config::Builder::from(&self.config).region(sns::config::Region::new(region.to_string())).build();
        clients.entry(region.to_string()).or_insert_with(|| sns::Client::from_conf(config)).clone()
    }

    fn eventbridge(&self, region: &str) -> eventbridge::Client {
        let mut clients = self.eventbridge.lock().expect("eventbridge clients lock");
        let config = eventbridge::config::Builder::from(&self.config).region(eventbridge::config::Region::new(region.to_string())).build();
        clients.entry(region.to_string()).or_insert_with(|| eventbridge::Client::from_conf(config)).clone()
    }

    /// Sends one CDEvent; `group` orders a FIFO topic's messages (the Rollout). The SDK retries
    /// what is worth retrying; an `Err` says why it was not delivered.
    pub async fn publish(
        &self,
        target: &Target,
        event: &serde_json::Value,
        group: &str,
        decided_at: jiff::Timestamp,
    ) -> Result<(), String> {
        let region = target.region().ok_or("the ARN has no region")?;
        let id = event["context"]["id"].as_str().unwrap_or_default();
        let kind = event["context"]["type"].as_str().unwrap_or_default();
        match target.sink {
            Sink::Sns => {
                let attribute = |value: &str| {
                    sns::types::MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| e.to_string())
                };
                let mut publish = self
                    .sns(region)
                    .publish()
                    .topic_arn(&target.address)
                    .message(event.to_string())
                    .message_attributes(ID_ATTRIBUTE, attribute(id)?)
                    .message_attributes(TYPE_ATTRIBUTE, attribute(kind)?);
                if target.address.ends_with(".fifo") {
                    // A FIFO topic drops a repeat of the same id itself (within 5 minutes).
                    publish = publish.message_group_id(group).message_deduplication_id(id);
                }
                publish.send().await.map(|_| ()).map_err(|e| described(&e))
            }
            Sink::EventBridge => {
                let entry = eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&target.address)
                    .source(EVENT_SOURCE)
                    .detail_type(kind)
                    .detail(event.to_string())
                    .time(eventbridge::primitives::DateTime::from_millis(decided_at.as_millisecond()))
                    .build();
                let answer = self.eventbridge(region).put_events().entries(entry).send().await.map_err(|e| described(&e))?;
                match answer.entries().first().and_then(|e| e.error_code().map(|code| (code, e.error_message().unwrap_or_default()))) {
                    Some((code, message)) => Err(format!("{code}: {message}")),
                    None if answer.failed_entry_count() > 0 => Err("the event was not accepted".into()),
                    None => Ok(()),
                }
            }
            Sink::Json | Sink::Slack => Err("not an AWS destination".into()),
        }
    }
}

fn described<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(error: &SdkError<E, R>) -> String {
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        // No answer at all: connection, timeout, credentials. The chain of causes says which.
        _ => DisplayErrorContext(error).to_string(),
    }
}
