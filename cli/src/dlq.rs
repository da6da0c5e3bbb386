//! `bazaar dlq`: the dead-letter queue for operators. Messages a consumer
//! group failed to handle `max_attempts` times wait there with their last
//! error; `list` shows them, `show` prints one in full, `replay` delivers it
//! again to the group it died in (and only that group) once the cause is fixed.
//!
//! The bus is found through the running platform's `run/state.json` (the
//! broker process, or the NATS servers of the distributed profile), or named
//! with `--broker-url` / `--nats-url`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bus::{DeadLetter, Transport};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::state::{Profile, RunState};

/// Options of `bazaar dlq`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DlqCommand,
    /// The data directory of the running platform, to find its bus.
    #[arg(long, value_name = "DIR", env = "BAZAAR_DATA_DIR", default_value = ".bazaar", global = true)]
    data_dir: PathBuf,
    /// The embedded broker's URL, instead of the one the running platform uses.
    #[arg(long, value_name = "URL", global = true, conflicts_with = "nats_url")]
    broker_url: Option<String>,
    /// A NATS server of the distributed profile; repeat for a cluster.
    #[arg(long, value_name = "URL", global = true)]
    nats_url: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// Lists dead letters, oldest first.
    List {
        /// Only this consumer group's.
        #[arg(long)]
        group: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prints one dead letter in full: its group, error, attempts and envelope.
    Show {
        /// The dead letter's id, as `list` shows it.
        id: String,
    },
    /// Delivers dead letters again to the group they died in and removes them from the queue.
    Replay {
        /// The dead letters' ids, as `list` shows them.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Replays every dead letter (of `--group`, if given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With `--all`: only this consumer group's.
        #[arg(long, requires = "all")]
        group: Option<String>,
    },
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let transport = connect(&args).await?;
    match args.command {
        DlqCommand::List { group, limit, json } => {
            let letters = transport.dead_letters(group.as_deref(), limit as usize).await?;
            if json {
                let items: Vec<_> = letters.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if letters.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                print!("{}", table(&letters));
            }
        }
        DlqCommand::Show { id } => {
            let letter = transport.dead_letter_by_id(&id).await.map_err(|e| not_found(e, &id))?;
            println!("{}", serde_json::to_string_pretty(&to_json(&letter))?);
        }
        DlqCommand::Replay { ids, all, group } => {
            let ids = if all {
                let letters = transport.dead_letters(group.as_deref(), 10_000).await?;
                letters.into_iter().map(|l| l.id).collect()
            } else {
                ids
            };
            for id in &ids {
                transport.replay(id).await.map_err(|e| not_found(e, id))?;
                println!("replayed {id}");
            }
            if ids.is_empty() {
                println!("nothing to replay");
            }
        }
    }
    Ok(())
}

/// The transport named by the flags, or the one the running platform uses.
async fn connect(args: &Args) -> anyhow::Result<Transport> {
    if let Some(url) = &args.broker_url {
        return Ok(Transport::Embedded(bus::EmbeddedTransport::new(url)));
    }
    let nats_urls = if args.nats_url.is_empty() {
        let state = match RunState::read(&args.data_dir)? {
            Some(state) if state.supervisor_is_running() => state,
            _ => bail!(
                "bazaar is not running in {}; start it with `bazaar up`, or name the bus with --broker-url or --nats-url",
                args.data_dir.display()
            ),
        };
        if state.profile == Profile::Embedded {
            let broker = state
                .processes
                .iter()
                .find(|p| p.service == "broker")
                .with_context(|| format!("the platform in {} runs no broker process", args.data_dir.display()))?;
            return Ok(Transport::Embedded(bus::EmbeddedTransport::new(&broker.url)));
        }
        state.nats_urls
    } else {
        args.nats_url.clone()
    };
    // An operator tool uses the streams the services made; it never makes them.
    let options =
        bus::JetStreamOptions { create_streams: false, connection_name: "bazaar-dlq".into(), ..Default::default() };
    Ok(Transport::JetStream(bus::JetStreamTransport::connect(&nats_urls, options).await?))
}

fn not_found(error: bus::BusError, id: &str) -> anyhow::Error {
    match error {
        bus::BusError::NotFound(_) => anyhow::anyhow!("no dead letter {id}; `bazaar dlq list` shows the ids"),
        other => other.into(),
    }
}

fn time_text(letter: &DeadLetter) -> String {
    letter.dead_at.format(&Rfc3339).unwrap_or_default()
}

fn to_json(letter: &DeadLetter) -> serde_json::Value {
    json!({
        "id": letter.id,
        "group": letter.group,
        "attempts": letter.attempts,
        "dead_at": time_text(letter),
        "error": letter.error,
        "envelope": letter.envelope,
    })
}

/// The error, cut to fit a terminal line.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        format!("{}...", line.chars().take(max - 3).collect::<String>())
    }
}

fn table(letters: &[DeadLetter]) -> String {
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                l.group.clone(),
                l.envelope.message_type.clone(),
                l.envelope.subject.clone(),
                l.attempts.to_string(),
                time_text(l),
                short(&l.error, 60),
            ]
        })
        .collect();
    crate::table::render(&["id", "group", "type", "subject", "attempts", "dead at", "error"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_to_one_line() {
        assert_eq!(short("first line\nsecond", 60), "first line");
        assert_eq!(short(&"x".repeat(100), 10), "xxxxxxx...");
    }
}
