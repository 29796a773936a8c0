//! One test's namespace with its Services and its Rollout `web`, driven through the API server
//! as a person or a pipeline would (the e2e and CloudFormation tests).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::Rollout;
use sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION;

use super::registrar::Registrar;
use super::{Stack, namespace, wait_for};

pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct Scene {
    pub client: kube::Client,
    pub ns: String,
    pub rollouts: Api<Rollout>,
}

impl Scene {
    /// A fresh namespace with `services`, each selecting `app: web` on port 8080.
    pub async fn new(stack: &Stack, prefix: &str, services: &[&str]) -> Scene {
        let client = stack.kube().await;
        let ns = namespace(&client, prefix).await;
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        for name in services {
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))
            .unwrap();
            api.create(&PostParams::default(), &service).await.expect("service created");
        }
        Scene { rollouts: Api::namespaced(client.clone(), &ns), client, ns }
    }

    /// The pods behind `web-stable` and `web-canary` join the stable and canary target groups
    /// `delay` after they are ready endpoints, as the AWS Load Balancer Controller registers them.
    pub fn bind_target_groups(
        &self,
        elb: &aws_sdk_elasticloadbalancingv2::Client,
        stable: &str,
        canary: &str,
        delay: Duration,
    ) -> [Registrar; 2] {
        [("web-stable", stable), ("web-canary", canary)]
            .map(|(service, group)| Registrar::bind(self.client.clone(), &self.ns, service, elb.clone(), group, delay))
    }

    pub async fn create(&self, rollout: &Rollout) {
        self.rollouts.create(&PostParams::default(), rollout).await.expect("rollout created");
    }

    /// A merge patch of the Rollout `web`.
    pub async fn patch(&self, patch: Value) {
        self.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("rollout patched");
    }

    /// What `kubectl sluice promote|abort|retry` writes: the Rollout's `sluice.dev/commands`.
    pub async fn command(&self, kind: &str, id: &str) {
        self.requests(json!({kind: {"id": id}})).await;
    }

    /// What `kubectl sluice promote --full` writes.
    pub async fn promote_full(&self, id: &str) {
        self.requests(json!({"promote": {"id": id, "full": true}})).await;
    }

    async fn requests(&self, requests: Value) {
        let patch = json!({"metadata": {"annotations": {sluice::api::COMMANDS_ANNOTATION: requests.to_string()}}});
        self.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("command written");
    }

    /// What a cluster admin does before a namespace's Rollouts may use AWS resources: list them
    /// in the Namespace's annotation.
    pub async fn allow_aws(&self, arns: &[&str]) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let patch = json!({"metadata": {"annotations": {ALLOWED_AWS_RESOURCES_ANNOTATION: arns.join(", ")}}});
        api.patch(&self.ns, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("namespace annotated");
    }

    /// Waits until the Rollout `web` passes `check`; returns it as it passed.
    pub async fn wait(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        wait_for(what, DEADLINE, || async {
            let rollout = self.rollouts.get("web").await.ok()?;
            check(&rollout).then_some(rollout)
        })
        .await
    }
}
