//! Weight locations Sluice did not name: the listener rules whose forward action holds exactly
//! a (stable, canary) pair of target groups, as the AWS Load Balancer Controller makes them
//! from an Ingress. They are found once (the pair's load balancers from DescribeTargetGroups,
//! or by the DNS name an Ingress's status gives, then DescribeListeners and DescribeRules per
//! listener), remembered, and read again by ARN in one DescribeRules; found again when one has
//! gone or no longer holds the pair.

use super::{AlbRouter, RouterError, aws, find_split};

/// One rule forwarding to the pair, as read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRule {
    pub rule_arn: String,
    /// Percent on the canary group; `None` when the forward action is not a split of the two
    /// (it held the pair when it was found).
    pub canary_weight: Option<i32>,
}

impl AlbRouter {
    /// Every rule forwarding to exactly `stable_tg` and `canary_tg`, with its canary weight.
    /// Empty when the pair's load balancers have none (yet). `dns_name` is a load balancer
    /// that may hold them (an Ingress's status), for when the target group does not say.
    pub async fn pair_rules(&self, stable_tg: &str, canary_tg: &str, dns_name: Option<&str>) -> Result<Vec<PairRule>, RouterError> {
        let key = (stable_tg.to_string(), canary_tg.to_string());
        let known = self.pairs.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().unwrap_or_default();
        if !known.is_empty()
            && let Some(read) = self.read_known(&known, stable_tg, canary_tg).await?
        {
            return Ok(read);
        }
        let found = self.discover(stable_tg, canary_tg, dns_name).await?;
        let arns = found.iter().map(|r| r.rule_arn.clone()).collect();
        self.pairs.lock().unwrap_or_else(|e| e.into_inner()).insert(key, arns);
        Ok(found)
    }

    /// The remembered rules read again; `None` when one has gone or no longer holds the pair.
    async fn read_known(&self, arns: &[String], stable_tg: &str, canary_tg: &str) -> Result<Option<Vec<PairRule>>, RouterError> {
        self.count();
        let out = match self.client.describe_rules().set_rule_arns(Some(arns.to_vec())).send().await {
            Ok(out) => out,
            Err(error) => {
                let failure = aws("DescribeRules", &error);
                return if failure.kind == super::FailureKind::NotFound { Ok(None) } else { Err(RouterError::Aws(failure)) };
            }
        };
        let read: Vec<PairRule> = out
            .rules()
            .iter()
            .filter_map(|rule| {
                let split = find_split(rule.actions(), stable_tg, canary_tg).ok()?;
                Some(PairRule { rule_arn: rule.rule_arn()?.to_string(), canary_weight: split.canary_percent() })
            })
            .collect();
        Ok((read.len() == arns.len()).then_some(read))
    }

    async fn discover(&self, stable_tg: &str, canary_tg: &str, dns_name: Option<&str>) -> Result<Vec<PairRule>, RouterError> {
        self.count();
        let groups = self
            .client
            .describe_target_groups()
            .target_group_arns(stable_tg)
            .send()
            .await
            .map_err(|e| RouterError::Aws(aws("DescribeTargetGroups", &e)))?;
        let mut load_balancers: Vec<String> = Vec::new();
        for arn in groups.target_groups().iter().flat_map(|g| g.load_balancer_arns()) {
            if !load_balancers.contains(arn) {
                load_balancers.push(arn.clone());
            }
        }
        if let Some(found) = self.by_dns_name(dns_name).await?.filter(|arn| !load_balancers.contains(arn)) {
            load_balancers.push(found);
        }
        let mut found = Vec::new();
        for load_balancer in load_balancers {
            self.count();
            let listeners = self
                .client
                .describe_listeners()
                .load_balancer_arn(&load_balancer)
                .send()
                .await
                .map_err(|e| RouterError::Aws(aws("DescribeListeners", &e)))?;
            for listener in listeners.listeners().iter().filter_map(|l| l.listener_arn()) {
                for rule in self.listener_rules(listener).await? {
                    if let (Ok(split), Some(arn)) = (find_split(rule.actions(), stable_tg, canary_tg), rule.rule_arn()) {
                        found.push(PairRule { rule_arn: arn.to_string(), canary_weight: split.canary_percent() });
                    }
                }
            }
        }
        Ok(found)
    }

    /// The load balancer of a DNS name (`NAME-ID.REGION.elb.amazonaws.com`, `internal-` first for
    /// an internal one), looked up by its name and checked against the DNS name.
    async fn by_dns_name(&self, dns_name: Option<&str>) -> Result<Option<String>, RouterError> {
        let Some(dns_name) = dns_name else { return Ok(None) };
        let label = dns_name.split('.').next().unwrap_or_default();
        let Some((name, _id)) = label.strip_prefix("internal-").unwrap_or(label).rsplit_once('-') else { return Ok(None) };
        self.count();
        let found = match self.client.describe_load_balancers().names(name).send().await {
            Ok(found) => found,
            Err(error) => {
                let failure = aws("DescribeLoadBalancers", &error);
                return if failure.kind == super::FailureKind::NotFound { Ok(None) } else { Err(RouterError::Aws(failure)) };
            }
        };
        let same =
            |lb: &&aws_sdk_elasticloadbalancingv2::types::LoadBalancer| lb.dns_name().is_some_and(|d| d.eq_ignore_ascii_case(dns_name));
        Ok(found.load_balancers().iter().find(same).and_then(|lb| lb.load_balancer_arn().map(str::to_string)))
    }
}
