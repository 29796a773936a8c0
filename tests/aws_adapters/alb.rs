//! The ALB router against moto through the real SDK.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateOidcActionConfig, HttpHeaderConditionConfig, PathPatternConditionConfig, RuleCondition,
};
use sluice::api::{AlbTraffic, HeaderMatch, HeaderValueMatch, SetHeaderRoute};
use sluice::traffic::alb::{AlbRouter, RouterError};

use crate::fixtures::{self, Balancer};
use crate::proxy::Proxy;
use crate::support::Stack;

fn oidc(order: i32) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://idp.example.com")
                .authorization_endpoint("https://idp.example.com/authorize")
                .token_endpoint("https://idp.example.com/token")
                .user_info_endpoint("https://idp.example.com/userinfo")
                .client_id("shop")
                .client_secret("not-a-secret")
                .build(),
        )
        .order(order)
        .build()
}

fn conditions() -> Vec<RuleCondition> {
    vec![
        RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(PathPatternConditionConfig::builder().values("/api/*").build())
            .build(),
        RuleCondition::builder().field("host-header").values("shop.example.com").build(),
        RuleCondition::builder()
            .field("http-header")
            .http_header_config(HttpHeaderConditionConfig::builder().http_header_name("X-Region").values("eu").build())
            .build(),
    ]
}

/// A rule at priority 10 with three conditions, an authenticate-oidc action (order 1) and a
/// sticky forward action (order 2) holding both target groups, stable first.
async fn weighted_rule(lb: &Balancer) -> String {
    let out = lb
        .client
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(10)
        .set_conditions(Some(conditions()))
        .actions(oidc(1))
        .actions(fixtures::forward(&[(&lb.stable, 100), (&lb.canary, 0)], Some(300), Some(2)))
        .send()
        .await
        .expect("rule created");
    out.rules()[0].rule_arn().unwrap().to_string()
}

register_test!(10, rule_weight_steps_rewrite_only_the_forward_action);
pub async fn rule_weight_steps_rewrite_only_the_forward_action(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 11).await;
    fixtures::register(&lb.client, &lb.stable, &["10.11.1.10", "10.11.1.11", "10.11.2.10"]).await;
    fixtures::register(&lb.client, &lb.canary, &["10.11.1.20"]).await;
    let rule = weighted_rule(&lb).await;
    let before = fixtures::describe_rule(&lb.client, &rule).await;
    let alb = fixtures::alb_on_rule(&lb, &rule);
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));

    let state = router.read(&alb, &lb.stable, &lb.canary).await.expect("read");
    assert_eq!(state.canary_weight, Some(0));
    assert_eq!(state.stable_healthy, ["10.11.1.10", "10.11.1.11", "10.11.2.10"].map(String::from).into(), "healthy targets by IP");
    assert_eq!(state.canary_healthy, ["10.11.1.20".to_string()].into());
    assert_eq!(router.calls(), 3, "a read is one DescribeRules and one DescribeTargetHealth per target group");

    for weight in [5, 20, 50, 100, 0] {
        let calls = router.calls();
        assert_eq!(router.set_weight(&alb, &lb.stable, &lb.canary, weight).await.expect("weight set"), weight);
        let step_calls = router.calls() - calls;
        println!("    alb rule: weight {weight:>3}: {step_calls} ELBv2 calls (ModifyRule + DescribeRules read back)");
        assert_eq!(step_calls, 2, "one write and one read back per weight change");

        let after = fixtures::describe_rule(&lb.client, &rule).await;
        let forward = fixtures::forward_of(after.actions());
        assert_eq!(
            fixtures::weights(forward),
            vec![(lb.stable.clone(), 100 - weight), (lb.canary.clone(), weight)],
            "order of target groups kept"
        );
        let stickiness = forward.forward_config().unwrap().target_group_stickiness_config().unwrap();
        assert_eq!((stickiness.enabled(), stickiness.duration_seconds()), (Some(true), Some(300)), "stickiness survives");
        assert_eq!(forward.order(), Some(2), "action order kept");
        assert_eq!(after.conditions(), before.conditions(), "conditions untouched");
        assert_eq!(after.priority(), Some("10"));
        let auth: Vec<&Action> = after.actions().iter().filter(|a| a.r#type() == Some(&ActionTypeEnum::AuthenticateOidc)).collect();
        assert_eq!(auth.len(), 1, "the authenticate-oidc action is still there");
        assert_eq!(auth[0].order(), Some(1));
        let before_auth = before.actions().iter().find(|a| a.r#type() == Some(&ActionTypeEnum::AuthenticateOidc)).unwrap();
        let (was, is) = (before_auth.authenticate_oidc_config().unwrap(), auth[0].authenticate_oidc_config().unwrap());
        assert_eq!((is.issuer(), is.client_id(), is.token_endpoint()), (was.issuer(), was.client_id(), was.token_endpoint()));
    }

    // The same weight again, right after a read: nothing to write, no call.
    let calls = router.calls();
    assert_eq!(router.set_weight(&alb, &lb.stable, &lb.canary, 0).await.unwrap(), 0);
    assert_eq!(router.calls() - calls, 0, "a weight the last read shows is not written again");

    // Without a fresh read the router reads first: three calls.
    let cold = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3)).with_snapshot_max_age(Duration::ZERO);
    assert_eq!(cold.set_weight(&alb, &lb.stable, &lb.canary, 30).await.unwrap(), 30);
    println!("    alb rule: weight change with no fresh read: {} ELBv2 calls (DescribeRules, ModifyRule, DescribeRules)", cold.calls());
    assert_eq!(cold.calls(), 3);
    let calls = router.calls();
    let state = router.read(&alb, &lb.stable, &lb.canary).await.unwrap();
    assert_eq!(state.canary_weight, Some(0), "within the snapshot age a read reuses this router's last read");
    println!("    alb rule: read within the snapshot age: {} ELBv2 calls", router.calls() - calls);
    let calls = cold.calls();
    let state = cold.read(&alb, &lb.stable, &lb.canary).await.unwrap();
    assert_eq!(state.canary_weight, Some(30), "past the snapshot age a read sees another writer's change");
    assert_eq!(cold.calls() - calls, 3, "a cold read: the rule and the health of both target groups");
}

register_test!(20, listener_default_actions_keep_their_other_parts);
pub async fn listener_default_actions_keep_their_other_parts(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 12).await;
    // A listener whose default actions are authenticate-oidc then a sticky forward. (AWS takes
    // authenticate actions only on HTTPS listeners; moto takes them on HTTP too, and an HTTPS
    // listener in moto needs a certificate in ACM; the router does not look at the protocol.)
    // AWS never returns an OIDC client secret (moto does): the router writes the action back
    // asking ELBv2 to keep the secret it has. Built here without one, as AWS would describe it.
    let mut auth = oidc(1);
    auth.authenticate_oidc_config.as_mut().unwrap().client_secret = None;
    let actions = vec![auth, fixtures::forward(&[(&lb.canary, 0), (&lb.stable, 100)], Some(120), Some(2))];
    let listener = fixtures::listener(&lb.client, &lb.lb, 8443, actions).await;
    let alb = fixtures::alb_on_listener(&lb, &listener);
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));

    assert_eq!(router.read(&alb, &lb.stable, &lb.canary).await.unwrap().canary_weight, Some(0));
    for weight in [10, 40, 100] {
        let calls = router.calls();
        assert_eq!(router.set_weight(&alb, &lb.stable, &lb.canary, weight).await.unwrap(), weight);
        assert_eq!(router.calls() - calls, 2, "ModifyListener + DescribeListeners");
        let after = fixtures::default_actions(&lb.client, &listener).await;
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].r#type(), Some(&ActionTypeEnum::AuthenticateOidc));
        let auth = after[0].authenticate_oidc_config().unwrap();
        assert_eq!((auth.client_id(), auth.client_secret(), auth.use_existing_client_secret()), (Some("shop"), None, Some(true)));
        let forward = fixtures::forward_of(&after);
        assert_eq!(fixtures::weights(forward), vec![(lb.canary.clone(), weight), (lb.stable.clone(), 100 - weight)]);
        assert_eq!(forward.forward_config().unwrap().target_group_stickiness_config().unwrap().duration_seconds(), Some(120));
    }
    // Roles swap between ECS deployments: the caller names which group is stable now.
    let swapped = router.read(&alb, &lb.canary, &lb.stable).await.unwrap();
    assert_eq!(swapped.canary_weight, Some(0), "with the roles swapped, the former canary holds all traffic");
    assert_eq!(router.set_weight(&alb, &lb.canary, &lb.stable, 25).await.unwrap(), 25);
    let forward_weights = fixtures::weights(fixtures::forward_of(&fixtures::default_actions(&lb.client, &listener).await));
    assert_eq!(forward_weights, vec![(lb.canary.clone(), 75), (lb.stable.clone(), 25)]);
}

register_test!(30, wrong_arguments_are_refused_without_a_call);
pub async fn wrong_arguments_are_refused_without_a_call(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 13).await;
    let rule = weighted_rule(&lb).await;
    let alb = fixtures::alb_on_rule(&lb, &rule);
    // Through the proxy, which counts what reaches the wire.
    let proxy = Proxy::start(&stack.aws_endpoint, 0).await;
    let router = AlbRouter::new(&fixtures::sdk(&proxy.url, 3));
    let (s, c) = (lb.stable.as_str(), lb.canary.as_str());

    let refusals: Vec<(&str, RouterError)> = vec![
        ("weight 150", router.set_weight(&alb, s, c, 150).await.unwrap_err()),
        ("weight -1", router.set_weight(&alb, s, c, -1).await.unwrap_err()),
        ("same target group twice", router.set_weight(&alb, s, s, 50).await.unwrap_err()),
        ("same target group twice (read)", router.read(&alb, c, c).await.unwrap_err()),
        ("not a target group ARN", router.set_weight(&alb, s, "my-canary", 50).await.unwrap_err()),
        ("a load balancer ARN as target group", router.set_weight(&alb, s, &lb.lb, 50).await.unwrap_err()),
        (
            "a listener ARN as ruleArn",
            router.set_weight(&AlbTraffic { rule_arn: Some(lb.listener.clone()), ..alb.clone() }, s, c, 50).await.unwrap_err(),
        ),
        (
            "both listenerArn and ruleArn",
            router.set_weight(&AlbTraffic { listener_arn: Some(lb.listener.clone()), ..alb.clone() }, s, c, 50).await.unwrap_err(),
        ),
        ("no test listener", router.route_test_traffic(&alb, c).await.unwrap_err()),
        (
            "a header route to another target group",
            router.set_header_routes(&alb, &[SetHeaderRoute::default()], Some(&lb.lb)).await.unwrap_err(),
        ),
    ];
    for (what, error) in &refusals {
        println!("    refused ({what}): [{}] {error}", error.category());
        assert_eq!(error.category(), "invalid", "{what}");
    }
    assert_eq!(router.calls(), 0, "nothing was called");
    assert_eq!(proxy.totals(), (0, 0), "no request was sent");
    let forward = fixtures::forward_of(fixtures::describe_rule(&lb.client, &rule).await.actions()).clone();
    assert_eq!(fixtures::weights(&forward), vec![(lb.stable.clone(), 100), (lb.canary.clone(), 0)], "the rule is untouched");
}

register_test!(40, a_forward_action_that_is_not_ours_is_reported_not_rewritten);
pub async fn a_forward_action_that_is_not_ours_is_reported_not_rewritten(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 14).await;
    let other = fixtures::target_group(&lb.client, &lb.network.vpc, "other").await;
    let rule = lb
        .client
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(20)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().values("/x/*").build())
                .build(),
        )
        .actions(fixtures::forward(&[(&lb.stable, 90), (&other, 10)], None, None))
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    let alb = fixtures::alb_on_rule(&lb, &rule);
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));
    let before = fixtures::describe_rule(&lb.client, &rule).await;

    let state = router.read(&alb, &lb.stable, &lb.canary).await.expect("a read still works");
    assert_eq!(state.canary_weight, None, "never guessed");
    let reason = state.not_ours.expect("the reason is reported").to_string();
    println!("    reported: {reason}");
    assert!(reason.contains(&other) && reason.contains("weight 10"), "{reason}");

    let error = router.set_weight(&alb, &lb.stable, &lb.canary, 50).await.unwrap_err();
    assert_eq!(error.category(), "invalid");
    assert!(matches!(error, RouterError::NotOurs(_)), "{error}");
    assert_eq!(fixtures::describe_rule(&lb.client, &rule).await, before, "the rule is not rewritten");

    // A listener whose default action is a fixed response: reported the same way.
    let state = router.read(&fixtures::alb_on_listener(&lb, &lb.listener), &lb.stable, &lb.canary).await.unwrap();
    let reason = state.not_ours.unwrap().to_string();
    assert!(reason.contains("no forward action, only [fixed-response]"), "{reason}");

    // A rule that does not exist (well-formed ARN): not_found.
    let missing = rule.rsplit_once('/').map(|(head, _)| format!("{head}/0123456789abcdef")).unwrap();
    let error = router.read(&fixtures::alb_on_rule(&lb, &missing), &lb.stable, &lb.canary).await.unwrap_err();
    println!("    missing rule: [{}] {error}", error.category());
    assert_eq!(error.category(), "not_found");
}

register_test!(50, test_listener_sends_preview_traffic_to_one_target_group);
pub async fn test_listener_sends_preview_traffic_to_one_target_group(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 15).await;
    let test_listener = fixtures::listener(&lb.client, &lb.lb, 8080, vec![fixtures::forward(&[(&lb.stable, 1)], Some(60), None)]).await;
    let alb = AlbTraffic { test_listener_arn: Some(test_listener.clone()), ..fixtures::alb_on_listener(&lb, &lb.listener) };
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));

    router.route_test_traffic(&alb, &lb.canary).await.expect("preview routed");
    let forward = fixtures::forward_of(&fixtures::default_actions(&lb.client, &test_listener).await).clone();
    assert_eq!(fixtures::weights(&forward), vec![(lb.canary.clone(), 1)]);
    assert_eq!(forward.forward_config().unwrap().target_group_stickiness_config().unwrap().duration_seconds(), Some(60), "stickiness kept");
    let calls = router.calls();
    router.route_test_traffic(&alb, &lb.canary).await.unwrap();
    assert_eq!(router.calls() - calls, 0, "already there, as read back within the snapshot age: no call");

    // A test listener holding both groups gets 100/0.
    lb.client
        .modify_listener()
        .listener_arn(&test_listener)
        .default_actions(fixtures::forward(&[(&lb.stable, 50), (&lb.canary, 50)], None, None))
        .send()
        .await
        .unwrap();
    // Another writer changed it: a router whose last read is not fresh sees that.
    let cold = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3)).with_snapshot_max_age(Duration::ZERO);
    cold.route_test_traffic(&alb, &lb.stable).await.unwrap();
    let forward = fixtures::forward_of(&fixtures::default_actions(&lb.client, &test_listener).await).clone();
    assert_eq!(fixtures::weights(&forward), vec![(lb.stable.clone(), 100), (lb.canary.clone(), 0)]);

    let other = fixtures::target_group(&lb.client, &lb.network.vpc, "other").await;
    let error = router.route_test_traffic(&alb, &other).await.unwrap_err();
    assert_eq!(error.category(), "invalid", "{error}");
}

register_test!(60, header_route_rules_are_created_kept_and_removed);
pub async fn header_route_rules_are_created_kept_and_removed(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 16).await;
    let rule = weighted_rule(&lb).await;
    let alb = fixtures::alb_on_rule(&lb, &rule);
    let header = |name: &str, exact: Option<&str>, prefix: Option<&str>| HeaderMatch {
        header_name: name.into(),
        header_value: HeaderValueMatch { exact: exact.map(String::from), prefix: prefix.map(String::from) },
    };
    let testers = SetHeaderRoute { name: "testers".into(), matches: vec![header("X-Canary", Some("always"), None)] };
    let mobile = SetHeaderRoute {
        name: "mobile".into(),
        matches: vec![header("User-Agent", None, Some("MobileApp/")), header("X-Beta", Some("yes"), None)],
    };
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3)).with_snapshot_max_age(Duration::ZERO);
    let listener_rules = || async {
        let out = lb.client.describe_rules().listener_arn(&lb.listener).send().await.unwrap();
        out.rules().iter().filter(|r| r.is_default() != Some(true) && r.rule_arn() != Some(rule.as_str())).cloned().collect::<Vec<_>>()
    };
    let headers_of = |rule: &aws_sdk_elasticloadbalancingv2::types::Rule| {
        let mut headers: Vec<(String, Vec<String>)> = rule
            .conditions()
            .iter()
            .filter_map(|c| c.http_header_config())
            .map(|h| (h.http_header_name().unwrap().to_string(), h.values().to_vec()))
            .collect();
        headers.sort();
        headers
    };

    let both = [testers.clone(), mobile.clone()];
    router.set_header_routes(&alb, &both, Some(&lb.canary)).await.expect("header routes set");
    let rules = listener_rules().await;
    assert_eq!(rules.len(), 2, "one rule per route");
    let mut priorities: Vec<&str> = rules.iter().filter_map(|r| r.priority()).collect();
    priorities.sort();
    assert_eq!(priorities, ["8", "9"], "just before the weighted rule (10)");
    let mobile_rule = rules.iter().find(|r| headers_of(r).iter().any(|(name, _)| name == "User-Agent")).expect("the mobile rule");
    let fields: Vec<&str> = mobile_rule.conditions().iter().filter_map(|c| c.field()).collect();
    assert_eq!(fields, ["path-pattern", "host-header", "http-header", "http-header", "http-header"], "the weighted rule's and the route's");
    assert!(headers_of(mobile_rule).contains(&("User-Agent".to_string(), vec!["MobileApp/*".to_string()])), "a prefix is a wildcard");
    assert_eq!(fixtures::weights(fixtures::forward_of(mobile_rule.actions())), vec![(lb.canary.clone(), 1)]);

    router.set_header_routes(&alb, &both, Some(&lb.canary)).await.unwrap();
    assert_eq!(listener_rules().await.len(), 2, "set twice, two rules");
    router.set_header_routes(&alb, std::slice::from_ref(&mobile), Some(&lb.canary)).await.unwrap();
    let rules = listener_rules().await;
    assert_eq!(rules.len(), 1, "the testers route removed by a later step");
    assert!(headers_of(&rules[0]).iter().any(|(name, _)| name == "User-Agent"));
    router.set_header_routes(&alb, &[], None).await.unwrap();
    assert!(listener_rules().await.is_empty(), "all removed; the weighted rule stays");
    router.set_header_routes(&alb, &[], None).await.unwrap();
}

register_test!(150, drift_checks_read_a_listener_in_one_call_and_name_only_what_changed);
/// The drift sweep: rules read by listener and listeners by load balancer, one call each, and
/// only the locations changed since the router last read or wrote them are named.
pub async fn drift_checks_read_a_listener_in_one_call_and_name_only_what_changed(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 15).await;
    let mut rules = Vec::new();
    for priority in 1..=30 {
        let out = lb
            .client
            .create_rule()
            .listener_arn(&lb.listener)
            .priority(priority)
            .conditions(RuleCondition::builder().field("path-pattern").values(format!("/app-{priority}/*")).build())
            .actions(fixtures::forward(&[(&lb.stable, 100), (&lb.canary, 0)], None, None))
            .send()
            .await
            .expect("rule created");
        rules.push(out.rules()[0].rule_arn().unwrap().to_string());
    }
    let second =
        fixtures::listener(&lb.client, &lb.lb, 8080, vec![fixtures::forward(&[(&lb.stable, 100), (&lb.canary, 0)], None, None)]).await;
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));
    let locations: std::collections::BTreeSet<String> = rules.iter().cloned().chain([second.clone()]).collect();

    let first = router.sweep(&locations).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.changed, locations, "never read before: every location is new");
    assert_eq!(router.calls(), 2, "one DescribeRules for the listener's 30 rules, one DescribeListeners for the load balancer");

    let calls = router.calls();
    let quiet = router.sweep(&locations).await;
    assert!(quiet.changed.is_empty(), "nothing changed: {:?}", quiet.changed);
    assert_eq!(router.calls() - calls, 2);

    // One rule's weights and the second listener's forward changed behind the router's back;
    // the router's own write is no change.
    let alb = fixtures::alb_on_rule(&lb, &rules[3]);
    router.set_weight(&alb, &lb.stable, &lb.canary, 10).await.expect("weight set");
    lb.client
        .modify_rule()
        .rule_arn(&rules[7])
        .actions(fixtures::forward(&[(&lb.stable, 50), (&lb.canary, 50)], None, None))
        .send()
        .await
        .expect("rule changed by hand");
    lb.client.modify_listener().listener_arn(&second).default_actions(fixtures::fixed_404()).send().await.expect("listener changed");
    let found = router.sweep(&locations).await;
    assert_eq!(found.changed, [rules[7].clone(), second.clone()].into(), "only what changed outside the router");

    // A deleted rule is named once, then its absence is what the router knows.
    lb.client.delete_rule().rule_arn(&rules[9]).send().await.expect("rule deleted");
    assert_eq!(router.sweep(&locations).await.changed, [rules[9].clone()].into());
    assert!(router.sweep(&locations).await.changed.is_empty());
}

register_test!(160, a_reclaimed_location_gets_its_forward_action_back);
/// A weight location whose forward action was replaced (here by a fixed response, behind an
/// authenticate action): `reclaim` puts one forward to both groups in its place, keeping the
/// rest; `set_weight` refuses to.
pub async fn a_reclaimed_location_gets_its_forward_action_back(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 16).await;
    let rule = weighted_rule(&lb).await;
    let alb = fixtures::alb_on_rule(&lb, &rule);
    let mut outage = fixtures::fixed_404();
    outage.order = Some(2);
    lb.client.modify_rule().rule_arn(&rule).actions(oidc(1)).actions(outage).send().await.expect("rule changed by hand");
    let router = AlbRouter::new(&fixtures::sdk(&stack.aws_endpoint, 3));
    let refused = router.set_weight(&alb, &lb.stable, &lb.canary, 20).await.unwrap_err();
    assert!(matches!(refused, RouterError::NotOurs(_)), "{refused}");
    assert_eq!(router.reclaim(&alb, &lb.stable, &lb.canary, 20).await.expect("reclaimed"), 20);
    let after = fixtures::describe_rule(&lb.client, &rule).await;
    let forward = fixtures::forward_of(after.actions());
    assert_eq!(fixtures::weights(forward), vec![(lb.stable.clone(), 80), (lb.canary.clone(), 20)]);
    assert_eq!(forward.order(), Some(2), "in the place of the action it replaced");
    let kinds: Vec<_> = after.actions().iter().filter_map(|a| a.r#type().cloned()).collect();
    assert_eq!(kinds, [ActionTypeEnum::AuthenticateOidc, ActionTypeEnum::Forward], "the authenticate action stays");
    assert_eq!(after.conditions().len(), 3, "conditions untouched");
}
