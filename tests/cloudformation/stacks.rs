//! Creating a stack from a template under deploy/aws through CloudFormation on moto, and reading
//! back its outputs and resources.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};

use crate::support::{Stack, repo, wait_for, xml_value};

/// A stack in CREATE_COMPLETE.
pub struct Deployed {
    pub outputs: BTreeMap<String, String>,
    /// (logical id, type, physical id) of every resource CloudFormation lists.
    pub resources: Vec<(String, String, String)>,
}

impl Deployed {
    pub fn output(&self, key: &str) -> String {
        self.outputs.get(key).cloned().unwrap_or_else(|| panic!("the stack has no output {key}: {:?}", self.outputs))
    }
}

/// The text of a template under deploy/aws.
pub fn template(file: &str) -> String {
    std::fs::read_to_string(repo().join("deploy/aws").join(file)).unwrap_or_else(|e| panic!("deploy/aws/{file}: {e}"))
}

/// The template without the entries called `logical` at the second level (a resource and an
/// output of that name): what the tests leave out where moto's CloudFormation cannot create it.
pub fn without(template: &str, logical: &str) -> String {
    let start = format!("  {logical}:");
    let mut out = Vec::new();
    let mut skipping = false;
    for line in template.lines() {
        let second_level = line.starts_with("  ") && !line.starts_with("   ") && !line.trim_start().starts_with('#');
        let top_level = !line.is_empty() && !line.starts_with(' ');
        if line.trim_end() == start {
            skipping = true;
            continue;
        }
        if skipping && (second_level || top_level) {
            skipping = false;
        }
        if !skipping {
            out.push(line);
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    assert_ne!(text.trim(), template.trim(), "the template has no {logical}");
    text
}

/// The logical ids under `Resources:`, in the template's order.
pub fn resource_names(template: &str) -> Vec<&str> {
    let resources = template.split_once("\nResources:\n").expect("a Resources section").1;
    resources
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .filter(|line| line.starts_with("  ") && !line.starts_with("   ") && !line.trim_start().starts_with('#'))
        .filter_map(|line| line.trim().strip_suffix(':'))
        .collect()
}

/// Creates the stack and waits for CREATE_COMPLETE.
pub async fn deploy(stack: &Stack, name: &str, body: &str, parameters: &[(&str, &str)]) -> Deployed {
    let cfn = aws_sdk_cloudformation::Client::new(&stack.aws());
    let started = Instant::now();
    let parameters: Vec<Parameter> =
        parameters.iter().map(|(k, v)| Parameter::builder().parameter_key(*k).parameter_value(*v).build()).collect();
    cfn.create_stack()
        .stack_name(name)
        .template_body(body)
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {e:?}"));
    let described = wait_for(&format!("stack {name} created"), Duration::from_secs(60), || async {
        let described = cfn.describe_stacks().stack_name(name).send().await.expect("DescribeStacks");
        let found = described.stacks()[0].clone();
        match found.stack_status() {
            Some(StackStatus::CreateComplete) => Some(found),
            Some(StackStatus::CreateInProgress) | None => None,
            other => panic!("stack {name}: {other:?} {:?}", found.stack_status_reason()),
        }
    })
    .await;
    let took = started.elapsed();
    let outputs = described
        .outputs()
        .iter()
        .map(|o| (o.output_key().unwrap_or_default().to_string(), o.output_value().unwrap_or_default().to_string()))
        .collect();
    let listed = cfn.list_stack_resources().stack_name(name).send().await.expect("ListStackResources");
    let resources = listed
        .stack_resource_summaries()
        .iter()
        .map(|r| {
            (r.logical_resource_id().unwrap_or_default().to_string(), r.resource_type().unwrap_or_default().to_string(), {
                r.physical_resource_id().unwrap_or_default().to_string()
            })
        })
        .collect();
    println!("  stack {name}: CREATE_COMPLETE in {:.2}s", took.as_secs_f64());
    Deployed { outputs, resources }
}

/// A VPC (DNS hostnames on, as moto's ECS wants) with two subnets in two zones: the network
/// the templates take as parameters. Returns the VPC and the subnets joined by commas.
pub async fn network(stack: &Stack, second_octet: u8) -> (String, String) {
    let cidr = format!("10.{second_octet}.0.0/16");
    let vpc = xml_value(&stack.ec2(&[("Action", "CreateVpc"), ("CidrBlock", &cidr)]).await, "<vpcId>", "</vpcId>");
    stack.ec2(&[("Action", "ModifyVpcAttribute"), ("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")]).await;
    let mut subnets = Vec::new();
    for (i, zone) in [(1, "us-east-1a"), (2, "us-east-1b")] {
        let cidr = format!("10.{second_octet}.{i}.0/24");
        let xml = stack.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", &cidr), ("AvailabilityZone", zone)]).await;
        subnets.push(xml_value(&xml, "<subnetId>", "</subnetId>"));
    }
    (vpc, subnets.join(","))
}
