use clap::Parser;

fn main() -> std::process::ExitCode {
    sluice::cli::run(sluice::cli::Cli::parse())
}
