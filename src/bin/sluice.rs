use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = sluice::cli::Cli::parse();
    sluice::logging::init(cli.log_format);
    sluice::cli::run(cli)
}
