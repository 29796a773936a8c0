//! The real AWS Load Balancer Controller beside a stack (`e2e/lib/aws-lbc.sh`): it turns
//! Ingresses into moto's load balancers, listener rules and target groups, and registers the
//! pods of their Services through TargetGroupBindings. Stopped by its recorded pid when dropped.

use std::collections::BTreeMap;
use std::process::Command;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use super::{Stack, parse_exports, repo};

pub struct LoadBalancerController {
    stack_dir: std::path::PathBuf,
    /// What `start` exported: moto's default VPC, two of its subnets, its default security group.
    pub env: BTreeMap<String, String>,
}

impl LoadBalancerController {
    /// Starts the controller for `stack` (stopping one a killed run left behind first).
    pub fn start(stack: &Stack) -> LoadBalancerController {
        let script = repo().join("e2e/lib/aws-lbc.sh");
        let run = |verb: &str| {
            let mut command = stack.command("bash");
            command.arg(&script).arg(verb).envs(&stack.env).env("SLUICE_STACK_DIR", &stack.dir);
            command.output().expect("e2e/lib/aws-lbc.sh runs")
        };
        let _ = run("stop");
        let started = run("start");
        assert!(started.status.success(), "the AWS Load Balancer Controller did not start:\n{}", String::from_utf8_lossy(&started.stderr));
        LoadBalancerController { stack_dir: stack.dir.clone(), env: parse_exports(&String::from_utf8_lossy(&started.stdout)) }
    }

    /// The security group an Ingress names, so the controller writes no node security rules
    /// (which need the ENIs of real nodes).
    pub fn security_group(&self) -> &str {
        &self.env["SLUICE_LBC_SECURITY_GROUP"]
    }

    /// Two subnets in two zones, for `alb.ingress.kubernetes.io/subnets`.
    pub fn subnets(&self) -> &str {
        &self.env["SLUICE_LBC_SUBNETS"]
    }

    /// An internet-facing Ingress whose one rule forwards through the action named after the
    /// stable Service `web-stable`, with the security group that keeps the controller off node
    /// ENIs.
    pub fn ingress(&self, name: &str, path: &str) -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {
                "alb.ingress.kubernetes.io/scheme": "internet-facing",
                "alb.ingress.kubernetes.io/target-type": "ip",
                "alb.ingress.kubernetes.io/subnets": self.subnets(),
                "alb.ingress.kubernetes.io/security-groups": self.security_group(),
            }},
            "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": "web-stable", "port": {"name": "use-annotation"}}}
            }]}}]}
        }))
        .expect("an Ingress")
    }
}

impl LoadBalancerController {
    /// Stops the controller by its recorded pid; stopping it again does nothing.
    pub fn stop(&self) {
        let _ = Command::new("bash").arg(repo().join("e2e/lib/aws-lbc.sh")).arg("stop").arg(&self.stack_dir).output();
    }
}

impl Drop for LoadBalancerController {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The target groups the controller made for an Ingress's two Services: (stable, canary).
pub async fn target_groups(client: &kube::Client, namespace: &str, ingress: &str) -> Option<(String, String)> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("elbv2.k8s.aws", "v1beta1", "TargetGroupBinding"));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let bindings = api.list(&ListParams::default().labels(&format!("ingress.k8s.aws/stack-name={ingress}"))).await.ok()?.items;
    let group_of = |service: &str| {
        bindings.iter().find_map(|b| {
            let spec = b.data.get("spec")?;
            (spec.pointer("/serviceRef/name")?.as_str()? == service).then(|| spec.get("targetGroupARN")?.as_str().map(String::from))?
        })
    };
    Some((group_of("web-stable")?, group_of("web-canary")?))
}

/// The load balancer the controller made for an Ingress, by the DNS name in its status (moto
/// lists no load balancers on a target group that only rules forward to).
pub async fn load_balancer(elb: &elbv2::Client, ingresses: &Api<Ingress>, name: &str) -> String {
    let ingress = ingresses.get(name).await.unwrap();
    let points = ingress.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    let dns = points.iter().find_map(|p| p.hostname.clone()).expect("the controller reports its load balancer");
    // NAME-ID.REGION.elb.amazonaws.com
    let name = dns.split('.').next().and_then(|label| label.rsplit_once('-')).map(|(name, _)| name.to_string()).unwrap();
    let named = elb.describe_load_balancers().names(name).send().await.expect("DescribeLoadBalancers");
    let found = named.load_balancers().iter().find(|lb| lb.dns_name() == Some(dns.as_str())).expect("the Ingress's load balancer");
    found.load_balancer_arn().unwrap().to_string()
}

/// The (stable, canary) weights of every rule of the load balancer forwarding to both groups.
pub async fn rule_weights(elb: &elbv2::Client, lb: &str, groups: &(String, String)) -> Vec<(i32, i32)> {
    let mut weights = Vec::new();
    let listeners = elb.describe_listeners().load_balancer_arn(lb).send().await.expect("DescribeListeners");
    for listener in listeners.listeners() {
        let rules = elb.describe_rules().listener_arn(listener.listener_arn().unwrap()).send().await.expect("DescribeRules");
        for action in rules.rules().iter().flat_map(|r| r.actions()) {
            let Some(forward) = action.forward_config() else { continue };
            let weight = |arn: &str| forward.target_groups().iter().find(|t| t.target_group_arn() == Some(arn)).and_then(|t| t.weight());
            if let (Some(stable), Some(canary)) = (weight(&groups.0), weight(&groups.1)) {
                weights.push((stable, canary));
            }
        }
    }
    weights
}
