//! The one configuration loader. Every service reads its section in the same
//! order of precedence: built-in defaults, then the `[<service>]` section of
//! `bazaar.toml`, then `BAZAAR_<SERVICE>__<KEY>` environment variables (`__`
//! separates nesting), then flags given on the command line. The result is
//! validated when the process starts: an unknown key or a bad value stops it
//! with a message naming the key and where it came from. Because each process
//! reads only its own section, a misspelt section (`[catalg]`) would otherwise
//! be ignored by all of them; given the names of the real sections, the loader
//! refuses any other.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider as _};
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
    /// The names of every section there is (one per service). When set, a file
    /// table or a `BAZAAR_<SECTION>__<KEY>` variable naming any other section is
    /// an error; when `None`, other sections are not looked at.
    pub known_sections: Option<Vec<String>>,
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

/// The environment variable that sets dotted `key` of `section`:
/// `env_var("catalog", "database.url")` is `BAZAAR_CATALOG__DATABASE__URL`.
pub fn env_var(section: &str, key: &str) -> String {
    let mut name = format!("{ENV_PREFIX}{}", section.to_ascii_uppercase());
    for part in key.split('.') {
        name.push_str("__");
        name.push_str(&part.to_ascii_uppercase());
    }
    name
}

/// Loads section `section` into `T`, starting from `T::default()`.
///
/// `T` should use `#[serde(deny_unknown_fields, default)]` so a misspelt key is
/// an error instead of being silently ignored.
pub fn load<T>(section: &str, sources: &Sources) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let files: Vec<PathBuf> = match &sources.files {
        Some(files) => {
            if let Some(missing) = files.iter().find(|file| !file.exists()) {
                return Err(ConfigError::MissingFile(missing.clone()));
            }
            files.clone()
        }
        None => vec![PathBuf::from(DEFAULT_FILE)],
    };
    if let Some(known) = &sources.known_sections {
        let env_names: Vec<String> = if sources.skip_env {
            Vec::new()
        } else {
            std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()).collect()
        };
        check_sections(section, known, &files, env_names)?;
    }
    let mut figment = Figment::from(Serialized::defaults(Section::wrap(section, &T::default())?));
    for file in &files {
        figment = figment.merge(Toml::file(file));
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

/// Fails on the first section named in `files` or by the environment variables
/// `env_names` that is neither `section` nor one of `known`.
fn check_sections(
    section: &str,
    known: &[String],
    files: &[PathBuf],
    env_names: impl IntoIterator<Item = String>,
) -> Result<(), ConfigError> {
    let is_known = |name: &str| name == section || known.iter().any(|k| k == name);
    let unknown = |name: &str, origin: String| {
        let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
        if !names.contains(&section) {
            names.push(section);
        }
        ConfigError::Rule {
            key: name.to_owned(),
            problem: format!("is not a section (from {origin}); the sections are: {}", names.join(", ")),
        }
    };
    for file in files {
        for name in file_sections(file) {
            if !is_known(&name) {
                return Err(unknown(&name, format!("TOML file {}", file.display())));
            }
        }
    }
    for var in env_names {
        if let Some(name) = env_section(&var)
            && !is_known(&name)
        {
            return Err(unknown(&name, format!("environment variable {var}")));
        }
    }
    Ok(())
}

/// The top-level tables of a TOML file. A file that is absent or does not
/// parse has none here; extracting the section reports the parse error.
fn file_sections(file: &Path) -> Vec<String> {
    let Ok(data) = Toml::file(file).data() else { return Vec::new() };
    data.into_values()
        .flat_map(|dict| dict.into_iter().filter(|(_, value)| value.as_dict().is_some()).map(|(name, _)| name))
        .collect()
}

/// The section an environment variable sets, read the way the loader reads it:
/// after the prefix (any case), the part before the first `__`, lower-cased.
/// A variable without `__` (`BAZAAR_DATA_DIR`) names no section.
fn env_section(var: &str) -> Option<String> {
    let prefix = var.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let (name, _) = var[ENV_PREFIX.len()..].trim().split_once("__")?;
    // The loader skips keys with an empty part, so they set nothing.
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
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
        Sources { files: Some(files), skip_env: true, ..Sources::default() }
    }

    fn known(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|n| (*n).to_owned()).collect())
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

    #[test]
    fn a_misspelt_file_section_is_rejected_naming_it_the_file_and_the_known_ones() {
        let (_dir, path) = file_with("[demo]\nworkers = 3\n[demoo.http]\nport = 1\n");
        let mut src = sources(vec![path.clone()]);
        src.known_sections = known(&["demo", "other"]);
        let error = load::<Demo>("demo", &src).err();
        assert!(matches!(&error, Some(ConfigError::Rule { key, .. }) if key == "demoo"), "{error:?}");
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("`demoo`"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("demo, other"), "{text}");
    }

    #[test]
    fn without_known_sections_a_misspelt_section_is_not_looked_at() {
        let (_dir, path) = file_with("[demoo]\nworkers = 3\n");
        let demo: Demo = load("demo", &sources(vec![path])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo, Demo::default());
    }

    #[test]
    fn known_sections_and_top_level_values_pass_the_check() {
        let (_dir, path) = file_with("note = \"not a table\"\n[other]\nanything = 1\n[demo]\nworkers = 3\n");
        let mut src = sources(vec![path]);
        src.known_sections = known(&["other"]);
        let demo: Demo = load("demo", &src).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.workers, 3, "the loaded section counts as known even when not listed");
    }

    #[test]
    fn a_misspelt_env_section_is_rejected_naming_the_variable() {
        let known = ["demo".to_owned(), "other".to_owned()];
        let env = ["PATH".to_owned(), "BAZAAR_DEMOO__HTTP__PORT".to_owned()];
        let error = check_sections("demo", &known, &[], env).err();
        assert!(matches!(&error, Some(ConfigError::Rule { key, .. }) if key == "demoo"), "{error:?}");
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("environment variable BAZAAR_DEMOO__HTTP__PORT"), "{text}");
        assert!(text.contains("demo, other"), "{text}");
    }

    #[test]
    fn plain_and_known_env_variables_pass_the_check() {
        let known = ["demo".to_owned(), "other".to_owned()];
        let env =
            ["BAZAAR_DATA_DIR", "BAZAAR_POSTGRES_URL", "BAZAAR_BIN", "bazaar_other__x", "BAZAAR_DEMO__HTTP__PORT"];
        let outcome = check_sections("demo", &known, &[], env.map(str::to_owned));
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    #[test]
    fn env_variables_name_their_section_like_the_loader_reads_them() {
        assert_eq!(env_section("BAZAAR_CATLOG__HTTP__PORT").as_deref(), Some("catlog"));
        assert_eq!(env_section("bazaar_Catalog__x").as_deref(), Some("catalog"));
        assert_eq!(env_section("BAZAAR_DATA_DIR"), None);
        assert_eq!(env_section("BAZAAR___X"), None);
        assert_eq!(env_section("OTHER_CATALOG__X"), None);
        assert_eq!(env_section("BAZ"), None);
    }

    #[test]
    fn env_var_names_a_nested_key_of_a_section() {
        let name = env_var("catalog", "database.url");
        assert_eq!(name, "BAZAAR_CATALOG__DATABASE__URL");
        assert_eq!(env_section(&name).as_deref(), Some("catalog"));
    }
}
