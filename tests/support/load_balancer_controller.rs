//! The real AWS Load Balancer Controller beside a stack (`e2e/lib/aws-lbc.sh`): it turns
//! Ingresses into moto's load balancers, listener rules and target groups, and registers the
//! pods of their Services through TargetGroupBindings. Stopped by its recorded pid when dropped.

use std::collections::BTreeMap;
use std::process::Command;

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
