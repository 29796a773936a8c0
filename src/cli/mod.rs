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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against the cluster in the current kubeconfig.
    Controller,
    /// Print the CustomResourceDefinitions, or write them as files into a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
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

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Controller => Err("the controller is not in this build yet; `sluice simulate` runs the engine locally".to_string()),
        Command::Crd { write } => crd(write),
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

fn crd(write: Option<PathBuf>) -> Result<(), String> {
    let Some(dir) = write else {
        print!("{}", crate::api::crd::all_yaml());
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, crd) in crate::api::crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, crate::api::crd::to_yaml(&crd)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
