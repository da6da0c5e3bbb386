//! The `bazaar` command: `up` runs the whole platform on this machine,
//! `serve` runs one service, `status` shows what runs, `logs` searches what
//! the processes wrote, `dlq` manages the bus's dead letters.
//!
//! # Layout
//! - `services`: the table of services this binary runs (one line each).
//! - `topology`: what a table entry says (name, stage, needs, entry point).
//! - `serve`: `bazaar serve <service>`.
//! - `up`: `bazaar up`, the supervisor.
//! - `status`: `bazaar status`.
//! - `logs`: `bazaar logs`.
//! - `dlq`: `bazaar dlq list|show|replay`.
//! - `state`: `run/state.json`, shared by `up` and `status`.
//! - `logline`: parsing, filtering, merging and rendering log lines.
//! - `table`: plain-text tables.
//! - `sys`: the two OS calls that need `unsafe` (signals, parent-death signal).
//! - `datadir`: keeping the data dir private to its owner.

mod datadir;
mod dlq;
mod logline;
mod logs;
mod serve;
mod services;
mod state;
mod status;
mod sys;
mod table;
mod topology;
mod up;

use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// bazaar: an e-commerce platform built from microservices.
#[derive(Debug, Parser)]
#[command(name = "bazaar", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole platform on this machine, each service as its own supervised process.
    Up(up::Args),
    /// Runs one service in this process.
    Serve(serve::Args),
    /// Shows the processes of the running platform and their health.
    Status(status::Args),
    /// Searches the platform's logs.
    Logs(logs::Args),
    /// Lists, shows and replays the bus's dead letters.
    Dlq(dlq::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = parse();
    let outcome = match cli.command {
        Command::Up(args) => up::run(args, services::ALL).await,
        Command::Serve(args) => serve::run(args, services::ALL).await,
        Command::Status(args) => status::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line.
fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit())
}

/// The command line, completed from the service table: `serve` accepts (and
/// its help lists) exactly those names, and `up` says which services it runs.
fn command() -> clap::Command {
    let names = topology::names(services::ALL);
    Cli::command()
        .mut_subcommand("serve", |serve| {
            serve.mut_arg("service", |arg| {
                arg.value_parser(PossibleValuesParser::new(services::ALL.iter().map(|s| s.name)))
            })
        })
        .mut_subcommand("up", |up| {
            up.about(format!("Runs the platform on this machine ({names}), each service as its own supervised process"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_help_names_the_services_it_runs_and_nothing_else() {
        let mut command = command();
        let help = command.find_subcommand_mut("up").map(|up| up.render_long_help().to_string()).unwrap_or_default();
        assert!(help.contains("(broker, identity, catalog, gateway)"), "{help}");
        assert!(!help.contains("orders"), "{help}");
    }

    #[test]
    fn serve_takes_repeated_config_and_set_flags() {
        let cli = Cli::try_parse_from([
            "bazaar",
            "serve",
            "catalog",
            "--port",
            "4001",
            "--instance",
            "2",
            "--config",
            "a.toml",
            "--config",
            "b.toml",
            "--set",
            "x=1",
            "--set",
            "y=2",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!((args.port, args.instance, args.config.len(), args.set.len()), (Some(4001), 2, 2, 2));
    }

    #[test]
    fn up_defaults_to_the_embedded_profile_on_port_8080() {
        let cli = Cli::try_parse_from(["bazaar", "up", "--replicas", "catalog=2"]).unwrap_or_else(|e| panic!("{e}"));
        let Command::Up(args) = cli.command else { panic!("not up") };
        assert_eq!(args.port, 8080);
        assert_eq!(args.profile, state::Profile::Embedded);
        assert_eq!(args.replicas, [("catalog".to_owned(), 2)]);
    }

    #[test]
    fn up_refuses_port_zero() {
        assert!(Cli::try_parse_from(["bazaar", "up", "--port", "0"]).is_err());
    }
}
