//! The one configuration loader. Every service reads its section in the same
//! order of precedence: built-in defaults, then the `[<service>]` section of
//! `bazaar.toml`, then `BAZAAR_<SERVICE>__<KEY>` environment variables (`__`
//! separates nesting), then flags given on the command line. The result is
//! validated when the process starts: an unknown key or a bad value stops it
//! with a message naming the key and where it came from.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The file read from the working directory when no other is named.
pub const DEFAULT_FILE: &str = "bazaar.toml";

/// The prefix of every environment variable the loader reads.
pub const ENV_PREFIX: &str = "BAZAAR_";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is unknown or a value has the wrong type; the message names the key and its source.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value parsed but breaks a rule (a port of 0 for the gateway, an empty route table).
    #[error("invalid configuration: `{key}` {problem}")]
    Rule {
        /// The dotted key of the bad value (`gateway.rate_limit.user.burst`).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A configuration file named explicitly does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// A `--set` flag is not `key=value`.
    #[error("`--set {0}` is not of the form key=value")]
    BadOverride(String),
}

/// Where configuration comes from, besides the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Files to read in order (later ones win); `None` means `./bazaar.toml` if present.
    pub files: Option<Vec<PathBuf>>,
    /// Whether to read `BAZAAR_*` environment variables (tests turn this off).
    pub skip_env: bool,
    /// Flags, as dotted keys inside the section with JSON values; these win over everything.
    pub overrides: Vec<(String, Value)>,
}

impl Sources {
    /// Adds a flag override. `value` is parsed as JSON when it is JSON, else taken as a string.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Parses a `key=value` flag as given to `--set`.
    pub fn set_flag(&mut self, flag: &str) -> Result<&mut Self, ConfigError> {
        let (key, raw) = flag.split_once('=').ok_or_else(|| ConfigError::BadOverride(flag.into()))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        Ok(self.set(key.trim(), value))
    }
}

/// Loads section `section` into `T`, starting from `T::default()`.
///
/// `T` should use `#[serde(deny_unknown_fields, default)]` so a misspelt key is
/// an error instead of being silently ignored.
pub fn load<T>(section: &str, sources: &Sources) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut figment = Figment::from(Serialized::defaults(Section::wrap(section, &T::default())?));
    match &sources.files {
        Some(files) => {
            for file in files {
                if !file.exists() {
                    return Err(ConfigError::MissingFile(file.clone()));
                }
                figment = figment.merge(Toml::file(file));
            }
        }
        None => figment = figment.merge(Toml::file(DEFAULT_FILE)),
    }
    if !sources.skip_env {
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    }
    let mut overrides = Map::new();
    for (key, value) in &sources.overrides {
        insert_dotted(&mut overrides, key, value.clone());
    }
    figment = figment
        .merge(Serialized::defaults(Value::Object(Map::from_iter([(section.to_owned(), Value::Object(overrides))]))));
    figment.focus(section).extract::<T>().map_err(|error| ConfigError::Invalid(describe(section, error)))
}

/// Inserts `value` at a dotted `key` path, creating the objects on the way.
fn insert_dotted(root: &mut Map<String, Value>, key: &str, value: Value) {
    let mut node = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return;
        }
        let entry = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => node = map,
            _ => return,
        }
    }
}

/// Figment's messages name the key relative to the focused section; prefix it
/// so the operator sees the full key (`catalog.htp`), and every error, not just the first.
fn describe(section: &str, error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { section.to_owned() } else { format!("{section}.{}", e.path.join(".")) };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    // Values built in code: the defaults never fail, so this is a flag.
                    Some(figment::Source::Code(_)) => "command-line flags".to_owned(),
                    Some(source) => format!("{} {source}", m.name),
                    None => m.name.to_string(),
                })
                .unwrap_or_default();
            let source = if source.is_empty() { String::new() } else { format!(" (from {source})") };
            format!("{key}: {}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Wraps a section's defaults as `{section: defaults}`.
struct Section;

impl Section {
    fn wrap<T: Serialize>(section: &str, value: &T) -> Result<Value, ConfigError> {
        let value = serde_json::to_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Value::Object(Map::from_iter([(section.to_owned(), value)])))
    }
}

/// Settings every service's HTTP listener shares (`[<service>.http]`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The address to bind; services stay on loopback, only the gateway is public.
    pub host: String,
    /// The port to bind; 0 picks a free one.
    pub port: u16,
    /// The largest request body accepted, in bytes (larger gets 413).
    pub body_limit_bytes: usize,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), port: 0, body_limit_bytes: 1024 * 1024, shutdown_grace_secs: 10 }
    }
}

/// Settings of a service's database (`[<service>.database]`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://<path>` or `postgres://...`; empty means the service's file in the data dir.
    pub url: String,
    /// The most connections the read pool opens (the write pool of SQLite has one).
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 4 }
    }
}

impl DatabaseSettings {
    /// The URL to connect to: the configured one, or the service's own SQLite
    /// file under `data_dir` (`services/<svc>/<svc>.sqlite`).
    pub fn url_or_default(&self, data_dir: &Path, service: &str) -> String {
        if self.url.is_empty() {
            let path = data_dir.join("services").join(service).join(format!("{service}.sqlite"));
            format!("sqlite://{}", path.display())
        } else {
            self.url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        http: HttpSettings,
        greeting: String,
        workers: u32,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self { http: HttpSettings::default(), greeting: "hello".into(), workers: 2 }
        }
    }

    fn file_with(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("bazaar.toml");
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("write: {e}"));
        (dir, path)
    }

    fn sources(files: Vec<PathBuf>) -> Sources {
        Sources { files: Some(files), skip_env: true, overrides: Vec::new() }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let demo: Demo = load("demo", &sources(vec![])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo, Demo::default());
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_the_file() {
        let (_dir, path) = file_with("[demo]\ngreeting = \"from file\"\nworkers = 5\n[demo.http]\nport = 9000\n");
        let mut src = sources(vec![path]);
        src.set_flag("workers=7").unwrap_or_else(|e| panic!("{e}"));
        let demo: Demo = load("demo", &src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.greeting, "from file");
        assert_eq!(demo.workers, 7);
        assert_eq!(demo.http.port, 9000);
        assert_eq!(demo.http.host, "127.0.0.1", "unset nested keys keep their defaults");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_full_name() {
        let (_dir, path) = file_with("[demo.http]\nprot = 9000\n");
        let error = load::<Demo>("demo", &sources(vec![path])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("demo.http.prot"), "{error}");
        assert!(error.contains("unknown field"), "{error}");
    }

    #[test]
    fn wrongly_typed_value_names_the_key() {
        let (_dir, path) = file_with("[demo]\nworkers = \"many\"\n");
        let error = load::<Demo>("demo", &sources(vec![path])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("demo.workers"), "{error}");
    }

    #[test]
    fn other_sections_do_not_disturb_this_one() {
        let (_dir, path) = file_with("[other]\nanything = 1\n[demo]\nworkers = 3\n");
        let demo: Demo = load("demo", &sources(vec![path])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.workers, 3);
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let missing = PathBuf::from("/nonexistent/bazaar.toml");
        assert!(matches!(load::<Demo>("demo", &sources(vec![missing])), Err(ConfigError::MissingFile(_))));
    }

    #[test]
    fn malformed_set_flag_is_an_error() {
        assert!(Sources::default().set_flag("workers").is_err());
    }
}
