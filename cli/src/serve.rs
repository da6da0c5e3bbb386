//! `bazaar serve <service>`: runs one service in this process until SIGTERM or
//! Ctrl-C. `bazaar up` starts every process this way; it is also how a
//! container runs one service. Like `up`, it keeps the data dir private to
//! its owner, and it refuses configuration sections no service reads.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chassis::config::Sources;
use chassis::server::Shutdown;
use chassis::service::ServeOptions;

use crate::datadir::{self, Secured};
use crate::topology::{self, Service};

/// Options of `bazaar serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service to run.
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The data directory: databases and keys live under it; created (or tightened to) mode 0700.
    #[arg(long, value_name = "DIR", env = "BAZAAR_DATA_DIR", default_value = ".bazaar")]
    pub data_dir: PathBuf,
    /// The port to listen on (the setting `http.port`); 0 picks a free one.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Which replica this process is, from 1; it names the process in logs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub instance: u32,
    /// A configuration file to read instead of ./bazaar.toml; repeat to layer files (later wins).
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Sets a key of the service's section, e.g. `--set http.body_limit_bytes=65536`
    /// or `--set 'upstreams.catalog=["http://127.0.0.1:4001"]'` (values are JSON when they parse as JSON).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Runs the service named in `args`, looked up in `catalogue`.
pub async fn run(args: Args, catalogue: &'static [Service]) -> anyhow::Result<()> {
    let service = topology::find(catalogue, &args.service)
        .with_context(|| format!("unknown service `{}`; valid names: {}", args.service, topology::names(catalogue)))?;
    let options = options(&args, catalogue)?;
    let instance = format!("{}-{}", service.name, args.instance);
    chassis::telemetry::init(&instance, "info,sqlx=warn");
    chassis::otel::init_from_env(service.name, &instance);
    secure_data_dir(&args.data_dir)?;
    (service.serve)(options, Shutdown::on_os_signal())
        .await
        .with_context(|| format!("{} stopped with an error", service.name))
}

/// Creates the data dir private to its owner, or tightens it, saying so, when others can read it.
fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    let secured = datadir::secure(dir).with_context(|| {
        format!("the data dir {} is not usable; pass --data-dir with a directory you can write to", dir.display())
    })?;
    if let Secured::Tightened { from } = secured {
        tracing::warn!(
            data_dir = %dir.display(),
            mode_before = %format!("{from:o}"),
            "the data dir {} was open to other users (mode {from:o}); made it private (mode 700)",
            dir.display()
        );
    }
    Ok(())
}

/// Builds the service's options from the flags. Every service of `catalogue`
/// names a section; any other section in the files or the environment is a mistake.
fn options(args: &Args, catalogue: &[Service]) -> anyhow::Result<ServeOptions> {
    let mut sources = Sources {
        files: (!args.config.is_empty()).then(|| args.config.clone()),
        known_sections: Some(catalogue.iter().map(|s| s.name.to_owned()).collect()),
        ..Sources::default()
    };
    for flag in &args.set {
        sources.set_flag(flag)?;
    }
    // The dedicated flag wins over a `--set http.port=...` given alongside it.
    if let Some(port) = args.port {
        sources.set("http.port", port);
    }
    Ok(ServeOptions { data_dir: args.data_dir.clone(), instance: args.instance, sources })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(port: Option<u16>, set: &[&str]) -> Args {
        Args {
            service: "catalog".into(),
            data_dir: PathBuf::from("/data"),
            port,
            instance: 2,
            config: vec![],
            set: set.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn options_for(args: &Args) -> anyhow::Result<ServeOptions> {
        options(args, crate::topology::fake::CATALOGUE)
    }

    #[test]
    fn every_service_of_the_table_is_a_known_section() {
        let options = options_for(&args(None, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            options.sources.known_sections,
            Some(vec!["broker".into(), "identity".into(), "catalog".into(), "gateway".into()])
        );
    }

    #[test]
    fn port_flag_becomes_the_http_port_override_and_wins_over_set() {
        let options = options_for(&args(Some(4001), &["http.port=5000", "database.max_connections=8"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.instance, 2);
        assert_eq!(options.data_dir, PathBuf::from("/data"));
        assert_eq!(options.sources.files, None, "no --config reads ./bazaar.toml");
        let overrides = options.sources.overrides;
        assert_eq!(overrides.last(), Some(&("http.port".to_owned(), json!(4001))));
        assert!(overrides.contains(&("database.max_connections".to_owned(), json!(8))));
    }

    #[test]
    fn set_values_parse_as_json_lists_or_fall_back_to_strings() {
        let options =
            options_for(&args(None, &[r#"upstreams.catalog=["http://127.0.0.1:1"]"#, "database.url=sqlite:///x"]))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.sources.overrides[0].1, json!(["http://127.0.0.1:1"]));
        assert_eq!(options.sources.overrides[1].1, json!("sqlite:///x"));
    }

    #[test]
    fn a_set_flag_without_equals_sign_is_rejected() {
        let error = options_for(&args(None, &["http.port"])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("key=value"), "{error}");
    }

    #[tokio::test]
    async fn an_unknown_service_is_refused_with_the_valid_names() {
        let mut wrong = args(None, &[]);
        wrong.service = "catalogue".into();
        let error = run(wrong, crate::topology::fake::CATALOGUE).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("unknown service `catalogue`"), "{error}");
        assert!(error.contains("identity, catalog, gateway"), "{error}");
    }
}
