use std::sync::Arc;
use std::time::Duration;

use crate::support::{Stack, wait_for};

register_test!(60, pushed_sample_is_queryable);
pub async fn pushed_sample_is_queryable(stack: Arc<Stack>) {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    stack.push_sample("sluice_test_error_ratio", &[("service", "checkout")], 0.07, now_ms).await;
    let client = prometheus_http_query::Client::try_from(stack.prometheus_url.as_str()).expect("client builds");
    let value = wait_for("the pushed sample", Duration::from_secs(15), || async {
        let response = client.query(r#"sluice_test_error_ratio{service="checkout"}"#).get().await.ok()?;
        let vector = response.data().as_vector()?;
        vector.first().map(|s| s.sample().value())
    })
    .await;
    assert_eq!(value, 0.07);
}
