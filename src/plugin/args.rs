//! The command line of `kubectl-sluice`, run by kubectl as `kubectl sluice ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Watch and drive Sluice rollouts",
    after_help = "Exit codes: 0 success (status: Healthy), 1 error, 2 bad usage, 3 Degraded, 4 timed out, 5 still in progress (or no answer yet), 6 request ignored or superseded."
)]
pub struct PluginCli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// Where to connect: kubectl's usual flags.
#[derive(Args, Debug, Clone, Default)]
pub struct Connection {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// How long promote, abort and retry wait for the controller to say what it did.
#[derive(Args, Debug, Clone, Copy)]
pub struct Answer {
    /// Wait this long for the controller's answer (applied, ignored or superseded); 0 returns
    /// as soon as the request is written.
    #[arg(long = "wait", value_parser = humantime::parse_duration, default_value = "15s")]
    pub wait: Duration,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// List rollouts: phase, step, weights, revisions and ready counts.
    List {
        /// List the rollouts of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show one rollout: phase, step, weights, revisions, ready counts and message.
    Get { name: String },
    /// A live view of a rollout; the exit code says whether it is Healthy.
    Status {
        name: String,
        /// Redraw on every change until the rollout is Healthy or Degraded.
        #[arg(short = 'w', long)]
        watch: bool,
        /// Give up after this long (e.g. 90s, 10m); implies --watch.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Complete the current step (with --full: skip every remaining step and analysis).
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        answer: Answer,
    },
    /// Send traffic back to the stable revision and scale the new one down.
    Abort {
        name: String,
        #[command(flatten)]
        answer: Answer,
    },
    /// Try an aborted revision again from the first step.
    Retry {
        name: String,
        #[command(flatten)]
        answer: Answer,
    },
    /// Hold the rollout where it is (sets spec.paused).
    Pause { name: String },
    /// Let a paused rollout continue (clears spec.paused).
    Resume { name: String },
    /// Put the template of an earlier revision back in the spec.
    Undo {
        name: String,
        /// The revision to return to (default: the stable one, or the previous one when the
        /// stable revision is the one in the spec).
        #[arg(long)]
        to_revision: Option<String>,
    },
    /// Change the workload's spec.
    #[command(subcommand)]
    Set(SetCommand),
    /// Replace every pod: sets spec.restartAt to now; the controller evicts the older pods a few at a time.
    Restart { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SetCommand {
    /// Set container images in the pod template: CONTAINER=IMAGE, one or more.
    Image {
        name: String,
        #[arg(required = true, value_parser = parse_image_assignment)]
        images: Vec<(String, String)>,
    },
}

fn parse_image_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((container, image)) if !container.is_empty() && !image.is_empty() => Ok((container.to_string(), image.to_string())),
        _ => Err(format!("expected CONTAINER=IMAGE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_may_come_before_or_after_the_command() {
        let cli =
            PluginCli::try_parse_from(["kubectl-sluice", "-n", "shop", "status", "web", "--timeout", "90s", "--context", "prod"]).unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.connection.context.as_deref(), Some("prod"));
        match cli.command {
            PluginCommand::Status { name, watch, timeout } => {
                assert_eq!((name.as_str(), watch, timeout), ("web", false, Some(Duration::from_secs(90))));
            }
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn set_image_takes_container_image_pairs() {
        let cli = PluginCli::try_parse_from(["kubectl-sluice", "set", "image", "web", "web=shop/web:2", "log=fluent:1"]).unwrap();
        let PluginCommand::Set(SetCommand::Image { name, images }) = cli.command else { panic!("not set image") };
        assert_eq!(name, "web");
        assert_eq!(images, vec![("web".into(), "shop/web:2".into()), ("log".into(), "fluent:1".into())]);
        assert!(PluginCli::try_parse_from(["kubectl-sluice", "set", "image", "web", "shop/web:2"]).is_err());
        assert!(PluginCli::try_parse_from(["kubectl-sluice", "set", "image", "web"]).is_err());
    }
}
