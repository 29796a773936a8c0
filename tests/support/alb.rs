//! An Application Load Balancer in moto, set up the way the rollouts under test expect it.

use super::{Stack, xml_value};

impl Stack {
    /// A load balancer in a new VPC with a listener forwarding to two target groups (stable 100,
    /// canary 0), with no targets: a [`super::registrar`] registers them as pods or tasks come.
    /// Returns the client, the listener and the stable and canary target groups.
    pub async fn balancer(&self, name: &str) -> (aws_sdk_elasticloadbalancingv2::Client, String, String, String) {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetGroupTuple, TargetTypeEnum,
        };
        let vpc = xml_value(&self.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.9.0.0/16")]).await, "<vpcId>", "</vpcId>");
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.9.1.0/24", "us-east-1a"), ("10.9.2.0/24", "us-east-1b")] {
            let xml = self.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", cidr), ("AvailabilityZone", zone)]).await;
            subnets.push(xml_value(&xml, "<subnetId>", "</subnetId>"));
        }
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&self.aws());
        let lb = elb.create_load_balancer().name(name).set_subnets(Some(subnets)).send().await.unwrap();
        let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
        let mut groups = Vec::new();
        for role in ["stable", "canary"] {
            let tg = elb
                .create_target_group()
                .name(format!("{name}-{role}"))
                .protocol(ProtocolEnum::Http)
                .port(80)
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Ip)
                .send()
                .await
                .unwrap();
            let arn = tg.target_groups()[0].target_group_arn().unwrap().to_string();
            groups.push(arn);
        }
        let tuples =
            [(&groups[0], 100), (&groups[1], 0)].map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build());
        let forward = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples.to_vec())).build())
            .build();
        let listener = elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(forward)
            .send()
            .await
            .unwrap();
        let listener = listener.listeners()[0].listener_arn().unwrap().to_string();
        (elb, listener, groups[0].clone(), groups[1].clone())
    }
}

/// The weights of two target groups in the listener's forward action (-1 when absent).
pub async fn listener_weights(elb: &aws_sdk_elasticloadbalancingv2::Client, listener: &str, first: &str, second: &str) -> (i32, i32) {
    let described = elb.describe_listeners().listener_arns(listener).send().await.unwrap();
    let action = &described.listeners()[0].default_actions()[0];
    let groups = action.forward_config().map(|f| f.target_groups()).unwrap_or_default();
    let weight = |arn: &str| groups.iter().find(|t| t.target_group_arn() == Some(arn)).and_then(|t| t.weight()).unwrap_or(-1);
    (weight(first), weight(second))
}
