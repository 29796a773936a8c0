use clap::Parser;

fn main() -> std::process::ExitCode {
    sluice::plugin::run(sluice::plugin::PluginCli::parse())
}
