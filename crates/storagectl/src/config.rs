//! Storage configuration the way Distribution reads it: the `storage:` section of a
//! `config.yml`, `REGISTRY_STORAGE*` environment overrides, then command-line flags.
//!
//! Precedence, lowest first: the file (or the embedded default), the environment, then
//! `--driver` / `--param`. Every parameter remembers where it came from, so an error can
//! name the file and key, the environment variable, or the flag that set it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use driver_api::{factory, Driver, Parameters, StorageError};
use serde_json::{Map, Value};

/// The keys of Distribution's `storage:` map that are settings, not the driver.
pub const RESERVED_STORAGE_KEYS: [&str; 5] = ["delete", "redirect", "cache", "maintenance", "tag"];

/// The environment prefix Distribution uses.
pub const ENV_PREFIX: &str = "REGISTRY";

/// Where the embedded default keeps its data.
pub const DEFAULT_ROOT: &str = "./data";

/// Where a setting came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// `--driver` / `--param` on the command line.
    Flag,
    /// The embedded default configuration.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag => f.write_str("command line"),
            Origin::Default => f.write_str("embedded default configuration"),
        }
    }
}

/// A configuration problem: always names where, which key, and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file, a variable or a flag is not valid YAML.
    #[error("{origin}: not valid YAML: {message}")]
    Yaml {
        /// Where.
        origin: Origin,
        /// The parser's message (with line and column for files).
        message: String,
    },
    /// A key holds the wrong kind of value, or is missing.
    #[error("{origin}: {key}: expected {expected}")]
    Key {
        /// Where.
        origin: Origin,
        /// Dotted key, e.g. `storage.delete.enabled`.
        key: String,
        /// What was expected.
        expected: String,
    },
    /// A `--param` flag is not `key=value`.
    #[error("command line: --param {0:?}: expected key=value")]
    ParamSyntax(String),
    /// The driver rejected its configuration.
    #[error("{origin}: {key}: {message}")]
    Driver {
        /// Where the offending parameter was set (or the storage section, if missing).
        origin: Origin,
        /// Dotted key, e.g. `storage.filesystem.maxthreads`.
        key: String,
        /// The driver's message.
        message: String,
    },
    /// No driver of that name.
    #[error("{origin}: storage: {source}")]
    UnknownDriver {
        /// Where the name was set.
        origin: Origin,
        /// The factory's error (lists registered drivers).
        source: StorageError,
    },
}

/// The storage configuration in effect.
#[derive(Clone)]
pub struct StorageConfig {
    /// The driver's registered name.
    pub driver: String,
    /// Its parameters.
    pub params: Parameters,
    /// `storage.delete.enabled` (Distribution's default: false).
    pub delete_enabled: bool,
    /// `storage.redirect.disable`.
    pub redirect_disabled: bool,
    /// Names of the `middleware: storage:` entries (not applied yet: no storage middleware
    /// exists in this project).
    pub middleware: Vec<String>,
    /// Where the driver name came from.
    pub origin: Origin,
    /// True when a Distribution configuration (a file or `REGISTRY_STORAGE*` variables)
    /// is in play, so its registry settings (`delete.enabled`) are honoured; false for the
    /// embedded default and `--driver` alone.
    pub from_distribution: bool,
    /// Where each parameter came from.
    param_origins: BTreeMap<String, Origin>,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parameters' own Debug shows keys only: values may be secrets.
        f.debug_struct("StorageConfig")
            .field("driver", &self.driver)
            .field("params", &self.params)
            .field("delete_enabled", &self.delete_enabled)
            .field("redirect_disabled", &self.redirect_disabled)
            .field("origin", &self.origin)
            .finish()
    }
}

/// The inputs to [`StorageConfig::load`], gathered from the command line.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--driver NAME`.
    pub driver: Option<String>,
    /// `--param key=value`, in order.
    pub params: Vec<String>,
    /// Apply `REGISTRY_*` environment overrides.
    pub use_env: bool,
}

/// A configuration tree plus the origin of every value in it.
struct Tree {
    root: Value,
    origins: BTreeMap<String, Origin>,
    base: Origin,
}

impl StorageConfig {
    /// Loads the configuration from `sources` and `env` (name/value pairs, e.g.
    /// `std::env::vars()`). Returns the configuration and whether the embedded default
    /// was used.
    pub fn load(
        sources: &Sources,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, bool), ConfigError> {
        let mut env: Vec<(String, String)> = if sources.use_env {
            env.into_iter()
                .filter(|(k, _)| {
                    k == "REGISTRY_STORAGE"
                        || k.starts_with("REGISTRY_STORAGE_")
                        || k.starts_with("REGISTRY_MIDDLEWARE_")
                })
                .collect()
        } else {
            Vec::new()
        };
        // Distribution applies variables in name order, so REGISTRY_STORAGE (which replaces
        // the whole section) comes before REGISTRY_STORAGE_<DRIVER>_<KEY>.
        env.sort();

        let mut used_default = false;
        let mut tree = match &sources.file {
            Some(path) => Tree::from_file(path)?,
            None if sources.driver.is_none() && env.is_empty() => {
                used_default = true;
                Tree {
                    root: serde_json::json!({
                        "storage": { "filesystem": { "rootdirectory": DEFAULT_ROOT } }
                    }),
                    origins: BTreeMap::new(),
                    base: Origin::Default,
                }
            }
            None => Tree {
                root: Value::Object(Map::new()),
                origins: BTreeMap::new(),
                base: Origin::Flag,
            },
        };
        for (name, value) in &env {
            tree.apply_env(name, value)?;
        }
        if let Some(name) = &sources.driver {
            tree.set_driver(name);
        }
        for p in &sources.params {
            let (k, v) = p
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ConfigError::ParamSyntax(p.clone()))?;
            tree.set_param(k, parse_scalar(v, &Origin::Flag)?)?;
        }
        let mut config = tree.into_config()?;
        config.from_distribution = sources.file.is_some() || !env.is_empty();
        Ok((config, used_default))
    }

    /// The storage section of a configuration file alone (no environment, no flags): the
    /// other side of a `sync`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Tree::from_file(path)?.into_config()
    }

    /// A driver by name with `key=value` parameters (the other side of a `sync`).
    pub fn from_flags(driver: &str, params: &[String]) -> Result<Self, ConfigError> {
        let sources = Sources {
            driver: Some(driver.to_owned()),
            params: params.to_vec(),
            ..Sources::default()
        };
        Ok(Self::load(&sources, std::iter::empty())?.0)
    }

    /// Where parameter `key` was set.
    pub fn origin_of(&self, key: &str) -> &Origin {
        self.param_origins.get(key).unwrap_or(&self.origin)
    }

    /// Creates the driver, mapping parameter errors to the file/variable/flag and key
    /// that caused them.
    pub async fn create(&self) -> Result<Driver, CreateError> {
        factory::create(&self.driver, self.params.clone())
            .await
            .map_err(|e| match e {
                StorageError::InvalidParameter {
                    key,
                    expected,
                    driver,
                } => CreateError::Config(ConfigError::Driver {
                    origin: self.origin_of(&key).clone(),
                    key: format!("storage.{driver}.{key}"),
                    message: format!("expected {expected}"),
                }),
                StorageError::Config { driver, message } => {
                    CreateError::Config(ConfigError::Driver {
                        origin: self.origin.clone(),
                        key: format!("storage.{driver}"),
                        message,
                    })
                }
                e @ StorageError::InvalidStorageDriver { .. } => {
                    CreateError::Config(ConfigError::UnknownDriver {
                        origin: self.origin.clone(),
                        source: e,
                    })
                }
                other => CreateError::Backend(other),
            })
    }

    /// The configuration as YAML-ready JSON, with secret values replaced by `<redacted>`.
    pub fn redacted(&self) -> Value {
        let specs = factory::find(&self.driver).map(|f| f.parameters);
        let mut params = Map::new();
        for (k, v) in self.params.iter() {
            let secret = match specs.and_then(|s| s.iter().find(|p| p.name == k)) {
                Some(spec) => spec.secret,
                None => looks_secret(k),
            };
            let shown = if secret {
                Value::String("<redacted>".into())
            } else {
                redact_nested(v)
            };
            params.insert(k.clone(), shown);
        }
        serde_json::json!({
            "driver": self.driver,
            "parameters": params,
            "delete": { "enabled": self.delete_enabled },
            "redirect": { "disable": self.redirect_disabled },
            "middleware": self.middleware,
            "source": self.origin.to_string(),
        })
    }
}

/// Why a driver could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The configuration is wrong (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend failed (exit code 1).
    #[error(transparent)]
    Backend(StorageError),
}

/// Keys that hold credentials in drivers we do not know the parameters of.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "credential",
        "privatekey",
        "accountkey",
        "accesskey",
        "keyfile",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn redact_nested(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if looks_secret(k) {
                        Value::String("<redacted>".into())
                    } else {
                        redact_nested(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_nested).collect()),
        other => other.clone(),
    }
}

/// A scalar as Distribution reads environment values: YAML (`true`, `5`, `"x"`), so types
/// match what the same text in a file would give.
fn parse_scalar(text: &str, origin: &Origin) -> Result<Value, ConfigError> {
    serde_norway::from_str::<Value>(text).map_err(|e| ConfigError::Yaml {
        origin: origin.clone(),
        message: e.to_string(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl Tree {
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = Origin::File(path.to_owned());
        let root = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_norway::from_str::<Value>(&text).map_err(|e| ConfigError::Yaml {
                origin: origin.clone(),
                message: e.to_string(),
            })?
        };
        if !root.is_object() {
            return Err(ConfigError::Key {
                origin,
                key: "(top level)".into(),
                expected: format!("a map, found {}", kind(&root)),
            });
        }
        Ok(Tree {
            root,
            origins: BTreeMap::new(),
            base: origin,
        })
    }

    fn root_map(&mut self) -> &mut Map<String, Value> {
        ensure_map(&mut self.root)
    }

    /// Applies one `REGISTRY_*` variable with Distribution's rules: the name, split at `_`
    /// after the prefix, is a path of upper-cased keys (list indices for lists); the value
    /// is YAML; a missing key is created in lower case.
    fn apply_env(&mut self, name: &str, payload: &str) -> Result<(), ConfigError> {
        let origin = Origin::Env(name.to_owned());
        let value = parse_scalar(payload, &origin)?;
        let path: Vec<&str> = name.split('_').skip(1).collect();
        let (top, rest) = match path.split_first() {
            Some((top, rest)) => (top.to_ascii_lowercase(), rest),
            None => return Ok(()),
        };
        if top == "storage" && rest.is_empty() {
            // `REGISTRY_STORAGE=s3` replaces the whole section, as in Distribution (a
            // string names a driver with no parameters).
            let section = match value {
                Value::String(s) => serde_json::json!({ s: {} }),
                other => other,
            };
            self.root_map().insert(top, section);
            self.origins.retain(|k, _| !k.starts_with("storage"));
            self.origins.insert("storage".into(), origin);
            return Ok(());
        }
        let slot = self.root_map().entry(top.clone()).or_insert(Value::Null);
        overwrite(slot, rest, value, name)?;
        let mut key = top;
        for p in rest {
            key.push('.');
            key.push_str(&p.to_ascii_lowercase());
        }
        self.origins.insert(key, origin);
        Ok(())
    }

    /// The `storage` map, created if missing.
    fn storage(&mut self) -> Result<&mut Map<String, Value>, ConfigError> {
        let base = self.base.clone();
        let slot = self
            .root_map()
            .entry("storage".to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(ensure_map(slot)),
            Value::String(s) => {
                // `storage: inmemory` names a driver with no parameters.
                let name = s.clone();
                let m = ensure_map(slot);
                m.insert(name, Value::Object(Map::new()));
                Ok(m)
            }
            other => Err(ConfigError::Key {
                origin: base,
                key: "storage".into(),
                expected: format!("a map naming one driver, found {}", kind(other)),
            }),
        }
    }

    fn set_driver(&mut self, name: &str) {
        if let Ok(storage) = self.storage() {
            storage.retain(|k, _| RESERVED_STORAGE_KEYS.contains(&k.as_str()));
            storage.insert(name.to_owned(), Value::Object(Map::new()));
        } else {
            self.root_map()
                .insert("storage".into(), serde_json::json!({ name: {} }));
        }
        self.origins.retain(|k, _| !k.starts_with("storage."));
        self.origins.insert("storage".into(), Origin::Flag);
    }

    fn set_param(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        let base = self.base.clone();
        let storage = self.storage()?;
        let driver = driver_keys(storage);
        let [name] = driver.as_slice() else {
            return Err(ConfigError::Key {
                origin: base,
                key: "storage".into(),
                expected: "exactly one driver before --param can set its parameters".into(),
            });
        };
        let name = name.clone();
        let params = storage.entry(name.clone()).or_insert(Value::Null);
        if params.is_null() {
            *params = Value::Object(Map::new());
        }
        if let Value::Object(m) = params {
            m.insert(key.to_owned(), value);
        }
        self.origins
            .insert(format!("storage.{name}.{key}"), Origin::Flag);
        Ok(())
    }

    fn origin(&self, key: &str) -> Origin {
        // The most specific recorded origin for `key` or one of its ancestors.
        let mut k = key.to_owned();
        loop {
            if let Some(o) = self.origins.get(&k) {
                return o.clone();
            }
            match k.rfind('.') {
                Some(i) => k.truncate(i),
                None => return self.base.clone(),
            }
        }
    }

    fn into_config(mut self) -> Result<StorageConfig, ConfigError> {
        let middleware = self.middleware()?;
        let storage_origin = self.origin("storage");
        let storage = self.storage()?.clone();
        let drivers = driver_keys(&storage);
        let driver = match drivers.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(ConfigError::Key {
                    origin: storage_origin,
                    key: "storage".into(),
                    expected: "one storage driver (e.g. filesystem, s3), found none".into(),
                })
            }
            many => {
                return Err(ConfigError::Key {
                    origin: storage_origin,
                    key: "storage".into(),
                    expected: format!("exactly one storage driver, found {}", many.join(", ")),
                })
            }
        };
        let params_key = format!("storage.{driver}");
        let params = match storage.get(&driver).cloned().unwrap_or(Value::Null) {
            Value::Null => Parameters::new(),
            Value::Object(m) => m.into_iter().collect(),
            other => {
                return Err(ConfigError::Key {
                    origin: self.origin(&params_key),
                    key: params_key,
                    expected: format!("a map of parameters, found {}", kind(&other)),
                })
            }
        };
        let delete_enabled = self.flag(&storage, "delete", "enabled")?;
        let redirect_disabled = self.flag(&storage, "redirect", "disable")?;
        let param_origins = params
            .iter()
            .map(|(k, _)| (k.clone(), self.origin(&format!("{params_key}.{k}"))))
            .collect();
        Ok(StorageConfig {
            from_distribution: true,
            origin: self.origin(&params_key),
            driver,
            params,
            delete_enabled,
            redirect_disabled,
            middleware,
            param_origins,
        })
    }

    /// `storage.<section>.<key>` as a boolean (absent: false).
    fn flag(
        &self,
        storage: &Map<String, Value>,
        section: &str,
        key: &str,
    ) -> Result<bool, ConfigError> {
        let dotted = format!("storage.{section}.{key}");
        let value = match storage.get(section) {
            None | Some(Value::Null) => return Ok(false),
            Some(Value::Object(m)) => m.get(key),
            Some(other) => {
                return Err(ConfigError::Key {
                    origin: self.origin(&format!("storage.{section}")),
                    key: format!("storage.{section}"),
                    expected: format!("a map, found {}", kind(other)),
                })
            }
        };
        match value {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ConfigError::Key {
                origin: self.origin(&dotted),
                key: dotted,
                expected: format!("true or false, found {}", kind(other)),
            }),
        }
    }

    fn middleware(&self) -> Result<Vec<String>, ConfigError> {
        let list = match self.root.get("middleware").and_then(|m| m.get("storage")) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(ConfigError::Key {
                    origin: self.origin("middleware.storage"),
                    key: "middleware.storage".into(),
                    expected: format!("a list of middleware, found {}", kind(other)),
                })
            }
        };
        list.iter()
            .enumerate()
            .map(|(i, m)| match m.get("name") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ConfigError::Key {
                    origin: self.origin("middleware.storage"),
                    key: format!("middleware.storage[{i}].name"),
                    expected: "a middleware name".into(),
                }),
            })
            .collect()
    }
}

/// `v` as a map, replacing whatever else it held with an empty one.
fn ensure_map(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("the value was just made a map"),
    }
}

/// The storage map's driver keys (everything but Distribution's settings keys).
fn driver_keys(storage: &Map<String, Value>) -> Vec<String> {
    storage
        .keys()
        .filter(|k| !RESERVED_STORAGE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Distribution's `overwriteFields` on a loosely typed tree: walks `path` (upper-case
/// names) from `slot`, matching map keys case-insensitively and list indices by number,
/// creating maps where nothing (or a scalar) is, and stores `value` at the end.
fn overwrite(slot: &mut Value, path: &[&str], value: Value, var: &str) -> Result<(), ConfigError> {
    let Some((head, rest)) = path.split_first() else {
        *slot = value;
        return Ok(());
    };
    match slot {
        Value::Array(list) => {
            let idx: usize = head.parse().map_err(|_| ConfigError::Key {
                origin: Origin::Env(var.to_owned()),
                key: head.to_ascii_lowercase(),
                expected: "a list index".into(),
            })?;
            if idx > list.len() {
                return Err(ConfigError::Key {
                    origin: Origin::Env(var.to_owned()),
                    key: head.to_string(),
                    expected: format!("an index up to {}", list.len()),
                });
            }
            if idx == list.len() {
                list.push(Value::Null);
            }
            overwrite(&mut list[idx], rest, value, var)
        }
        Value::Object(map) => {
            let existing = map
                .keys()
                .find(|k| k.to_ascii_uppercase() == *head)
                .cloned();
            let key = existing.unwrap_or_else(|| head.to_ascii_lowercase());
            let child = map.entry(key).or_insert(Value::Null);
            overwrite(child, rest, value, var)
        }
        other => {
            // A list index on nothing starts a list; a key starts a map.
            *other = if head.parse::<usize>().is_ok() {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            };
            overwrite(other, path, value, var)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(
        file: Option<&str>,
        vars: &[(&str, &str)],
        params: &[&str],
    ) -> Result<StorageConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let sources = Sources {
            file: file.map(|_| path.clone()),
            driver: None,
            params: params.iter().map(|s| s.to_string()).collect(),
            use_env: true,
        };
        StorageConfig::load(&sources, env(vars)).map(|(c, _)| c)
    }

    #[test]
    fn env_replaces_driver_and_adds_params() {
        let c = load(
            Some("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\n  delete:\n    enabled: true\n"),
            &[("REGISTRY_STORAGE_S3_REGION", "eu-west-1"), ("REGISTRY_STORAGE", "s3"), ("REGISTRY_STORAGE_S3_CHUNKSIZE", "5242880")],
            &[],
        )
        .unwrap();
        assert_eq!(c.driver, "s3");
        assert_eq!(c.params.get("region"), Some(&Value::from("eu-west-1")));
        assert_eq!(c.params.get("chunksize"), Some(&Value::from(5242880)));
        // REGISTRY_STORAGE replaces the whole section, settings included (as Distribution).
        assert!(!c.delete_enabled);
        assert_eq!(
            c.origin_of("region"),
            &Origin::Env("REGISTRY_STORAGE_S3_REGION".into())
        );
    }

    #[test]
    fn env_overrides_existing_keys_case_insensitively() {
        let c = load(
            Some("storage:\n  filesystem:\n    rootdirectory: /x\n    maxthreads: 50\n"),
            &[
                ("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS", "200"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("REGISTRY_HTTP_ADDR", ":5000"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.params.get("maxthreads"), Some(&Value::from(200)));
        assert_eq!(c.params.get("rootdirectory"), Some(&Value::from("/x")));
        assert!(c.delete_enabled);
    }

    #[test]
    fn flags_win_over_env_and_file() {
        let c = load(
            Some("storage:\n  filesystem:\n    rootdirectory: /x\n"),
            &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/y")],
            &["rootdirectory=/z", "maxthreads=30"],
        )
        .unwrap();
        assert_eq!(c.params.get("rootdirectory"), Some(&Value::from("/z")));
        assert_eq!(c.params.get("maxthreads"), Some(&Value::from(30)));
        assert_eq!(c.origin_of("rootdirectory"), &Origin::Flag);
    }

    #[test]
    fn two_drivers_is_an_error_naming_both() {
        let e = load(
            Some("storage:\n  filesystem: {}\n  inmemory: {}\n"),
            &[],
            &[],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("config.yml: storage: expected exactly one storage driver, found filesystem, inmemory"), "{msg}");
    }

    #[test]
    fn mistyped_settings_are_named() {
        let e = load(
            Some("storage:\n  inmemory:\n  delete:\n    enabled: yes please\n"),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("storage.delete.enabled: expected true or false, found a string"),
            "{e}"
        );
        let e = load(Some("storage:\n  filesystem: [1, 2]\n"), &[], &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("storage.filesystem: expected a map of parameters, found a list"),
            "{e}"
        );
        let e = load(Some("storage: {filesystem: {}\n"), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("config.yml: not valid YAML"), "{e}");
        let e = load(None, &[], &["novalue"]).unwrap_err();
        assert!(e.to_string().contains("expected key=value"), "{e}");
    }

    #[test]
    fn middleware_list_from_file_and_env() {
        let c = load(
            Some("storage:\n  inmemory:\nmiddleware:\n  storage:\n    - name: cloudfront\n      options:\n        privatekey: /k\n"),
            &[("REGISTRY_MIDDLEWARE_STORAGE_1_NAME", "redirect")],
            &[],
        )
        .unwrap();
        assert_eq!(c.middleware, vec!["cloudfront", "redirect"]);
    }

    #[test]
    fn redaction_uses_specs_and_names() {
        let c = load(Some("storage:\n  custom:\n    accountkey: hunter2\n    password: hunter2\n    region: x\n    nested: {token: hunter2}\n"), &[], &[]).unwrap();
        let shown = c.redacted().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("\"region\":\"x\""), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn embedded_default_only_without_any_source() {
        let (c, default) = StorageConfig::load(
            &Sources {
                use_env: true,
                ..Sources::default()
            },
            env(&[]),
        )
        .unwrap();
        assert!(default);
        assert_eq!(c.driver, "filesystem");
        let (c, default) = StorageConfig::load(
            &Sources {
                use_env: true,
                ..Sources::default()
            },
            env(&[("REGISTRY_STORAGE", "inmemory")]),
        )
        .unwrap();
        assert!(!default);
        assert_eq!(c.driver, "inmemory");
    }
}
