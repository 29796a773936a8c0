//! The `sluice` command line.

mod manifests;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use manifests::{Manifests, load_manifests};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Progressive delivery for Kubernetes and Amazon ECS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log as text lines or as one JSON object per line (colours only on a terminal).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check AWS resources before a rollout.
    Aws {
        #[command(subcommand)]
        command: AwsCommand,
    },
    /// Run the controller against the cluster in the current kubeconfig (or in-cluster config).
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions, or write them as files into directories.
    Crd {
        /// Write one file per CRD into this directory instead of printing (repeatable).
        #[arg(long)]
        write: Vec<PathBuf>,
    },
    /// Convert Argo Rollouts or Flagger manifests into Sluice manifests (printed as YAML; what does
    /// not map is reported on stderr).
    Import {
        /// Manifests: Argo Rollouts with their analysis templates, or Flagger Canaries with their
        /// Deployments and metric templates (multi-document YAML; repeatable).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the timeline a rollout would follow under a scenario.
    Simulate {
        /// Manifests: one Rollout and the AnalysisTemplates it uses (multi-document YAML).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Metric values, readiness delays, updates and commands over time.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// Read (only read) the listener, rules, target groups and ECS service each Rollout names
    /// and print every problem with its fix; exit 1 when there is one.
    Check {
        /// Manifests holding Rollouts (multi-document YAML; repeatable).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace; all namespaces when unset.
    #[arg(long, env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Act only while holding the leader Lease (run several replicas, one acts).
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    #[arg(long, env = "SLUICE_LEASE_NAME", default_value = "sluice-controller")]
    pub lease_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Label the delivery (DORA) metrics with each Rollout's name: one series per Rollout. With
    /// false, only the namespace.
    #[arg(long, env = "SLUICE_METRICS_ROLLOUT_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_rollout_label: bool,
    /// POST every Rollout's events to this URL (repeatable; `slack+https://...` for a
    /// Slack-compatible payload), or publish them as CDEvents to this SNS topic or EventBridge
    /// bus ARN. The environment variable takes a comma-separated list.
    #[arg(long = "webhook-url", env = "SLUICE_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<crate::notify::Target>,
    /// A file of webhook URLs and ARNs, one per line (mounted from a Secret: the URLs carry tokens).
    #[arg(long, env = "SLUICE_WEBHOOKS_FILE")]
    pub webhooks_file: Option<PathBuf>,
    /// A host metrics and webhooks may reach (repeatable): `prometheus.monitoring.svc`,
    /// `*.example.com`, `10.0.0.0/8`, `127.0.0.1:9090`, or `*`. With none, any host except
    /// loopback, link-local, metadata and unspecified addresses; with some, only those.
    #[arg(long = "allow-host", env = "SLUICE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<crate::egress::HostPattern>,
    /// An ARN pattern (`*` any characters, `?` one) of ALB listeners, rules, target groups or ECS
    /// services that Rollouts of every namespace may use, besides what each Namespace's
    /// `sluice.dev/allowed-aws-resources` annotation allows (repeatable). Without any, a Rollout
    /// naming an AWS resource its Namespace does not allow is refused.
    #[arg(long = "allow-aws-resource", env = "SLUICE_ALLOW_AWS_RESOURCES", value_delimiter = ',')]
    pub allow_aws_resources: Vec<String>,
    /// Read the ALB weight location of every Rollout at this interval (`60s`, `5m`; at least
    /// 10s), in one call per listener or load balancer, and restore weights or forward actions
    /// changed outside Sluice, with an event and the TrafficDrift condition. Off when unset: no
    /// call at all.
    #[arg(long, env = "SLUICE_DRIFT_CHECK_INTERVAL", value_parser = drift_check_interval)]
    pub drift_check_interval: Option<std::time::Duration>,
}

fn drift_check_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = crate::api::parse_duration(text).map_err(|e| e.to_string())?;
    let least = crate::controller::drift::MIN_INTERVAL;
    if interval < least {
        return Err(format!("{text} is shorter than {}: the checks share the account's ELBv2 request rate", least.as_secs()));
    }
    Ok(interval)
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Aws { command: AwsCommand::Check { files } } => aws_check(&files),
        Command::Controller(args) => controller(args),
        Command::Crd { write } => crd(write),
        Command::Import { files } => import(&files),
        Command::Simulate { file, scenario } => simulate::run(&file, scenario.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn controller(args: ControllerArgs) -> Result<(), String> {
    let mut webhooks = args.webhook_urls;
    if let Some(path) = &args.webhooks_file {
        webhooks.extend(crate::notify::targets_in_file(path)?);
    }
    let identity = args.identity.unwrap_or_else(|| format!("sluice-{}", std::process::id()));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %identity, namespace = args.namespace.as_deref().unwrap_or("all"), "starting the controller");
    let settings = crate::controller::Settings {
        namespace: args.namespace,
        metrics_addr: args.metrics_addr,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity,
        metrics_per_rollout: args.metrics_rollout_label,
        webhooks,
        allowed_hosts: args.allowed_hosts,
        allowed_aws_resources: args.allow_aws_resources,
        drift_check_interval: args.drift_check_interval,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async { crate::controller::run(settings).await.map_err(|e| e.to_string()) })
}

fn aws_check(files: &[PathBuf]) -> Result<(), String> {
    let mut rollouts = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        rollouts.extend(load_manifests(&text).map_err(|e| format!("{}: {e}", path.display()))?.rollouts);
    }
    if rollouts.is_empty() {
        return Err("no Rollout in the files".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let found = runtime.block_on(async {
        let clients = crate::preflight::Clients::new(&crate::aws::sdk_config().await);
        let mut found = 0;
        for rollout in &rollouts {
            let name = format!(
                "{}/{}",
                rollout.metadata.namespace.as_deref().unwrap_or("default"),
                rollout.metadata.name.as_deref().unwrap_or("")
            );
            let problems = crate::preflight::check(&clients, rollout).await;
            if problems.is_empty() {
                println!("{name}: ok");
            }
            for problem in &problems {
                println!("{name}: {problem}");
            }
            found += problems.len();
        }
        found
    });
    match found {
        0 => Ok(()),
        1 => Err("1 problem".into()),
        n => Err(format!("{n} problems")),
    }
}

fn import(files: &[PathBuf]) -> Result<(), String> {
    let mut inputs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        inputs.push((path.display().to_string(), text));
    }
    let imported = crate::import::import(&inputs).map_err(|e| e.to_string())?;
    for warning in &imported.warnings {
        eprintln!("{warning}");
    }
    print!("{}", imported.to_yaml());
    Ok(())
}

fn crd(write: Vec<PathBuf>) -> Result<(), String> {
    if write.is_empty() {
        print!("{}", crate::api::crd::all_yaml());
        return Ok(());
    }
    for dir in write {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (file, crd) in crate::api::crd::all() {
            let path = dir.join(file);
            std::fs::write(&path, crate::api::crd::to_yaml(&crd)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_repeat_and_the_rollout_label_can_be_dropped() {
        let cli = Cli::try_parse_from([
            "sluice",
            "controller",
            "--webhook-url",
            "https://a.test/hook",
            "--webhook-url",
            "slack+https://hooks.slack.com/services/T/B/X",
            "--metrics-rollout-label=false",
        ])
        .unwrap();
        let Command::Controller(args) = cli.command else { panic!("not the controller") };
        let urls: Vec<(&str, crate::notify::Sink)> = args.webhook_urls.iter().map(|t| (t.address.as_str(), t.sink)).collect();
        assert_eq!(
            urls,
            [("https://a.test/hook", crate::notify::Sink::Json), ("https://hooks.slack.com/services/T/B/X", crate::notify::Sink::Slack)]
        );
        assert!(!args.metrics_rollout_label);
        assert!(Cli::try_parse_from(["sluice", "controller", "--webhook-url", "ftp://x"]).is_err());
        let cli = Cli::try_parse_from(["sluice", "controller", "--webhook-url", "arn:aws:sns:us-east-1:123456789012:deploys"]).unwrap();
        let Command::Controller(args) = cli.command else { panic!("not the controller") };
        assert_eq!(args.webhook_urls[0].sink, crate::notify::Sink::Sns, "an SNS topic in the same list");
        let cli = Cli::try_parse_from(["sluice", "controller", "--allow-host", "127.0.0.1", "--allow-host", "*.example.com"]).unwrap();
        let Command::Controller(args) = cli.command else { panic!("not the controller") };
        assert_eq!(args.allowed_hosts.len(), 2);
        assert!(Cli::try_parse_from(["sluice", "controller", "--allow-host", "a b"]).is_err());
    }

    #[test]
    fn aws_resources_are_allowed_cluster_wide_by_a_repeatable_flag() {
        let cli = Cli::try_parse_from([
            "sluice",
            "controller",
            "--allow-aws-resource",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/*",
            "--allow-aws-resource=arn:aws:ecs:us-east-1:123456789012:service/prod/*",
        ])
        .unwrap();
        let Command::Controller(args) = cli.command else { panic!("not the controller") };
        assert_eq!(args.allow_aws_resources.len(), 2);
        let Command::Controller(none) = Cli::try_parse_from(["sluice", "controller"]).unwrap().command else {
            panic!("not the controller")
        };
        assert!(none.allow_aws_resources.is_empty(), "nothing is allowed unless an admin says so");
    }
}
