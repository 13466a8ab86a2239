//! Creating drivers by name from loosely typed parameters.
//!
//! Each driver crate registers one [`DriverFactory`] with `inventory::submit!`; [`create`]
//! finds it by name. Registration happens at link time, so a binary must link the driver
//! crates it wants (a `use driver_filesystem as _;` line is enough).
//!
//! ```
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::{factory, Parameters};
//! let err = factory::create("no-such-driver", Parameters::new()).await.unwrap_err();
//! assert!(matches!(err, driver_api::StorageError::InvalidStorageDriver { .. }));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::driver::StorageDriver;
use crate::error::{DriverName, Result, StorageError};
use crate::handle::Driver;

/// The kind of value a parameter takes (used for parsing and for documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Free text.
    String,
    /// A non-negative integer, optionally bounded (inclusive).
    Integer {
        /// Smallest accepted value.
        min: Option<u64>,
        /// Largest accepted value.
        max: Option<u64>,
    },
    /// `true`/`false` (also Go's `1`, `t`, `TRUE`, `0`, `f`, `FALSE`, ...).
    Bool,
    /// A duration in Go's syntax (`100ms`, `1.5s`, `1m30s`); a bare number is seconds.
    Duration,
    /// Any JSON/YAML value (lists, maps), interpreted by the driver.
    Any,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::String => f.write_str("string"),
            ParamKind::Bool => f.write_str("boolean"),
            ParamKind::Any => f.write_str("value"),
            ParamKind::Duration => f.write_str("duration (e.g. 100ms, 2s, 1m30s)"),
            ParamKind::Integer { min, max } => {
                f.write_str("integer")?;
                match (min, max) {
                    (Some(a), Some(b)) => write!(f, " in {a}..={b}"),
                    (Some(a), None) => write!(f, " >= {a}"),
                    (None, Some(b)) => write!(f, " <= {b}"),
                    (None, None) => Ok(()),
                }
            }
        }
    }
}

/// Describes one parameter a driver accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Key as written in the configuration (lower case, as in Distribution).
    pub name: &'static str,
    /// Type and bounds.
    pub kind: ParamKind,
    /// Whether the key must be given.
    pub required: bool,
    /// Default used when absent, written as it would be in a config file.
    pub default: Option<&'static str>,
    /// True for credentials: never printed.
    pub secret: bool,
    /// One line for `--help` style listings.
    pub description: &'static str,
}

impl ParamSpec {
    /// An optional parameter with no default.
    pub const fn new(name: &'static str, kind: ParamKind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
            secret: false,
            description,
        }
    }
    /// Builder: marks the parameter required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Builder: sets the default.
    pub const fn default_value(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }
    /// Builder: marks the parameter secret.
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// Creates a driver from its parameters.
pub type CreateFn = fn(Parameters) -> BoxFuture<'static, Result<Arc<dyn StorageDriver>>>;

/// One driver's registration; submit it with [`register_driver!`](crate::register_driver).
#[derive(Debug)]
pub struct DriverFactory {
    /// Registered name.
    pub name: &'static str,
    /// One line describing the backend.
    pub description: &'static str,
    /// Every accepted parameter.
    pub parameters: &'static [ParamSpec],
    /// The constructor.
    pub create: CreateFn,
}

inventory::collect!(DriverFactory);

/// Provides a driver for a name nothing is registered under, some other way: returns
/// `None` when it has none either.
pub type FallbackFn =
    fn(String, Parameters) -> BoxFuture<'static, Option<Result<Arc<dyn StorageDriver>>>>;

/// A fallback [`create`] consults, in no particular order, when no [`DriverFactory`] has
/// the name asked for. `driver-ipc` submits one that runs an executable
/// `registry-storage-<name>` found on `PATH` (an out-of-process driver).
#[derive(Debug)]
pub struct DriverFallback {
    /// What it does, for `storagectl drivers`.
    pub description: &'static str,
    /// The lookup.
    pub create: FallbackFn,
}

inventory::collect!(DriverFallback);

/// Registers a driver with the factory: expands to `inventory::submit!` of a
/// [`DriverFactory`] whose `create` awaits `$create(params)` (any function or closure
/// returning a future of `Result<impl StorageDriver>`). The driver crate needs no
/// dependency on `inventory` itself.
///
/// ```
/// use driver_api::{ParamKind, ParamSpec, Parameters, Result};
/// # #[derive(Debug)] struct Demo;
/// # #[driver_api::async_trait] impl driver_api::StorageDriver for Demo {
/// #   fn name(&self) -> &str { "demo" }
/// #   async fn get_content(&self, p: &driver_api::StoragePath) -> Result<bytes::Bytes> { Err(driver_api::StorageError::not_found("demo", p)) }
/// #   async fn put_content(&self, _: &driver_api::StoragePath, _: bytes::Bytes) -> Result<()> { Ok(()) }
/// #   async fn reader(&self, p: &driver_api::StoragePath, _: u64) -> Result<driver_api::ByteStream> { Err(driver_api::StorageError::not_found("demo", p)) }
/// #   async fn writer(&self, p: &driver_api::StoragePath, _: bool) -> Result<Box<dyn driver_api::FileWriter>> { Err(driver_api::StorageError::not_found("demo", p)) }
/// #   async fn stat(&self, p: &driver_api::StoragePath) -> Result<driver_api::FileInfo> { Err(driver_api::StorageError::not_found("demo", p)) }
/// #   async fn list(&self, p: &driver_api::StoragePath) -> Result<Vec<driver_api::StoragePath>> { Err(driver_api::StorageError::not_found("demo", p)) }
/// #   async fn rename(&self, s: &driver_api::StoragePath, _: &driver_api::StoragePath) -> Result<()> { Err(driver_api::StorageError::not_found("demo", s)) }
/// #   async fn delete(&self, p: &driver_api::StoragePath) -> Result<()> { Err(driver_api::StorageError::not_found("demo", p)) }
/// # }
/// static PARAMS: [ParamSpec; 1] = [ParamSpec::new("greeting", ParamKind::String, "what to say")];
///
/// driver_api::register_driver! {
///     name: "demo",
///     description: "an example",
///     parameters: &PARAMS,
///     create: |params: Parameters| async move {
///         params.reader("demo", &PARAMS).finish()?;
///         Ok::<_, driver_api::StorageError>(Demo)
///     },
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(driver_api::factory::find("demo").is_some());
/// let driver = driver_api::factory::create("demo", Parameters::new()).await.unwrap();
/// assert_eq!(driver.name(), "demo");
/// # }
/// ```
#[macro_export]
macro_rules! register_driver {
    (
        name: $name:expr,
        description: $description:expr,
        parameters: $parameters:expr,
        create: $create:expr $(,)?
    ) => {
        $crate::inventory::submit! {
            $crate::DriverFactory {
                name: $name,
                description: $description,
                parameters: $parameters,
                create: |params| ::std::boxed::Box::pin(async move {
                    let driver = ($create)(params).await?;
                    ::std::result::Result::Ok(
                        ::std::sync::Arc::new(driver) as ::std::sync::Arc<dyn $crate::StorageDriver>
                    )
                }),
            }
        }
    };
}

/// Every registered driver factory, sorted by name.
pub fn registered_drivers() -> Vec<&'static DriverFactory> {
    let mut v: Vec<_> = inventory::iter::<DriverFactory>.into_iter().collect();
    v.sort_by_key(|f| f.name);
    v
}

/// The factory registered under `name`.
pub fn find(name: &str) -> Option<&'static DriverFactory> {
    inventory::iter::<DriverFactory>
        .into_iter()
        .find(|f| f.name == name)
}

/// Creates the driver registered as `name` from `params`.
///
/// A name no driver is registered under is offered to the [`DriverFallback`]s (an
/// out-of-process driver, when `driver-ipc` is linked). Unknown names give
/// [`StorageError::InvalidStorageDriver`] listing what is registered; bad parameters give
/// [`StorageError::InvalidParameter`].
pub async fn create(name: &str, params: Parameters) -> Result<Driver> {
    let Some(factory) = find(name) else {
        for fallback in inventory::iter::<DriverFallback> {
            if let Some(made) = (fallback.create)(name.to_owned(), params.clone()).await {
                return made.map(Driver::from_arc);
            }
        }
        return Err(StorageError::InvalidStorageDriver {
            name: name.to_owned(),
            registered: registered_drivers()
                .iter()
                .map(|f| f.name.to_owned())
                .collect(),
        });
    };
    let driver = (factory.create)(params).await?;
    Ok(Driver::from_arc(driver))
}

/// A driver's parameters: string keys, loosely typed values as they come from a YAML or
/// JSON configuration or from environment variables (so `"5242880"` is a valid integer and
/// `"true"` a valid boolean).
///
/// `Debug` shows keys only: values may be credentials.
///
/// ```
/// use driver_api::Parameters;
/// let p = Parameters::new().with("rootdirectory", "/tmp/x").with("maxthreads", 50);
/// assert_eq!(format!("{p:?}"), r#"Parameters { keys: ["maxthreads", "rootdirectory"] }"#);
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Parameters(BTreeMap<String, Value>);

impl Parameters {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Builder: sets `key`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }
    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }
    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
    /// Iterates keys and raw values.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Parameters from a JSON object (`Config` error for any other JSON value).
    pub fn from_json(driver: impl Into<DriverName>, value: Value) -> Result<Self> {
        match value {
            Value::Object(m) => Ok(Self(m.into_iter().collect())),
            Value::Null => Ok(Self::new()),
            other => Err(StorageError::Config {
                driver: driver.into(),
                message: format!("parameters must be a map, got {}", json_kind(&other)),
            }),
        }
    }
    /// A typed reader checking these parameters against `specs`.
    pub fn reader(self, driver: &'static str, specs: &'static [ParamSpec]) -> ParamReader {
        ParamReader {
            driver,
            specs,
            params: self,
            seen: BTreeSet::new(),
        }
    }
}

impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parameters")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Parameters {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Reads typed values out of [`Parameters`] against a driver's [`ParamSpec`] list: applies
/// defaults, checks types and bounds, and with [`ParamReader::finish`] reports unknown keys.
///
/// ```
/// use driver_api::{ParamKind, ParamSpec, Parameters};
/// static SPECS: [ParamSpec; 1] = [ParamSpec::new(
///     "maxthreads", ParamKind::Integer { min: None, max: None }, "threads",
/// ).default_value("100")];
/// let mut r = Parameters::new().with("maxthreads", "50").reader("demo", &SPECS);
/// assert_eq!(r.u64("maxthreads").unwrap(), Some(50));
/// r.finish().unwrap();
/// ```
#[derive(Debug)]
pub struct ParamReader {
    driver: &'static str,
    specs: &'static [ParamSpec],
    params: Parameters,
    seen: BTreeSet<&'static str>,
}

impl ParamReader {
    fn invalid(&self, key: &str, expected: impl Into<String>) -> StorageError {
        StorageError::InvalidParameter {
            driver: self.driver.into(),
            key: key.to_owned(),
            expected: expected.into(),
        }
    }

    /// The spec and the given-or-default value of `key`; `None` when absent without default.
    fn take(&mut self, key: &'static str) -> Result<Option<(&'static ParamSpec, Value)>> {
        let Some(spec) = self.specs.iter().find(|s| s.name == key) else {
            return Err(StorageError::Config {
                driver: self.driver.into(),
                message: format!("driver bug: parameter {key:?} read but not declared"),
            });
        };
        self.seen.insert(spec.name);
        let value = match self.params.get(key) {
            Some(Value::Null) | None => spec.default.map(|d| Value::String(d.to_owned())),
            Some(v) => Some(v.clone()),
        };
        match value {
            None if spec.required => Err(self.invalid(key, format!("required {}", spec.kind))),
            None => Ok(None),
            Some(v) => Ok(Some((spec, v))),
        }
    }

    /// A string parameter (numbers and booleans are accepted and rendered as text).
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>> {
        let Some((_, v)) = self.take(key)? else {
            return Ok(None);
        };
        match v {
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(self.invalid(key, format!("a string, got {}", json_kind(&other)))),
        }
    }

    /// An integer parameter, checked against the spec's bounds.
    pub fn u64(&mut self, key: &'static str) -> Result<Option<u64>> {
        let Some((spec, v)) = self.take(key)? else {
            return Ok(None);
        };
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let Some(n) = n else {
            return Err(self.invalid(
                key,
                format!("a non-negative {}, got {}", spec.kind, json_kind(&v)),
            ));
        };
        if let ParamKind::Integer { min, max } = spec.kind {
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(self.invalid(key, format!("{}, got {n}", spec.kind)));
            }
        }
        Ok(Some(n))
    }

    /// A boolean parameter (accepts what Go's `strconv.ParseBool` accepts).
    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        let Some((_, v)) = self.take(key)? else {
            return Ok(None);
        };
        let b = match &v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
                _ => None,
            },
            Value::Number(n) => match n.as_u64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            _ => None,
        };
        b.map(Some)
            .ok_or_else(|| self.invalid(key, format!("a boolean, got {}", json_kind(&v))))
    }

    /// A [`ParamKind::Duration`] parameter: Go's duration syntax, or a number of seconds.
    pub fn duration(&mut self, key: &'static str) -> Result<Option<std::time::Duration>> {
        let Some((spec, v)) = self.take(key)? else {
            return Ok(None);
        };
        let parsed = match &v {
            Value::String(s) => parse_go_duration(s.trim()),
            Value::Number(n) => n
                .as_f64()
                .and_then(|f| std::time::Duration::try_from_secs_f64(f).ok()),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.invalid(key, format!("a {}, got {}", spec.kind, json_kind(&v))))
    }

    /// The raw value of a [`ParamKind::Any`] parameter.
    pub fn value(&mut self, key: &'static str) -> Result<Option<Value>> {
        Ok(self.take(key)?.map(|(_, v)| v))
    }

    /// Reports the first key that is not a declared parameter.
    pub fn finish(self) -> Result<()> {
        let unknown = self
            .params
            .iter()
            .map(|(k, _)| k)
            .find(|k| !self.specs.iter().any(|s| s.name == k.as_str()));
        match unknown {
            Some(k) => {
                let known: Vec<&str> = self.specs.iter().map(|s| s.name).collect();
                Err(self.invalid(
                    k,
                    format!("a known parameter (one of: {})", known.join(", ")),
                ))
            }
            None => Ok(()),
        }
    }
}

/// Parses Go's `time.ParseDuration` syntax (non-negative): `300ms`, `1.5h`, `2h45m`, `0`.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "ms", "1x", "-1s", "1s-"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    static SPECS: [ParamSpec; 4] = [
        ParamSpec::new("root", ParamKind::String, "root").default_value("/var/lib/x"),
        ParamSpec::new(
            "threads",
            ParamKind::Integer {
                min: Some(1),
                max: Some(10),
            },
            "n",
        ),
        ParamSpec::new("secure", ParamKind::Bool, "tls").default_value("true"),
        ParamSpec::new("bucket", ParamKind::String, "bucket").required(),
    ];

    #[test]
    fn loose_types_defaults_and_errors() {
        let mut r = Parameters::new()
            .with("threads", "7")
            .with("secure", "f")
            .with("bucket", "b")
            .reader("demo", &SPECS);
        assert_eq!(r.string("root").unwrap().as_deref(), Some("/var/lib/x"));
        assert_eq!(r.u64("threads").unwrap(), Some(7));
        assert_eq!(r.bool("secure").unwrap(), Some(false));
        assert_eq!(r.string("bucket").unwrap().as_deref(), Some("b"));
        r.finish().unwrap();

        let mut r = Parameters::new().with("threads", 11).reader("demo", &SPECS);
        let e = r.u64("threads").unwrap_err();
        assert_eq!(
            e.to_string(),
            "demo: invalid parameter \"threads\": integer in 1..=10, got 11"
        );
        let e = r.string("bucket").unwrap_err();
        assert!(matches!(e, StorageError::InvalidParameter { ref key, .. } if key == "bucket"));

        let mut r = Parameters::new()
            .with("secure", "maybe")
            .reader("demo", &SPECS);
        assert!(r.bool("secure").is_err());

        let r = Parameters::new().with("bogus", 1).reader("demo", &SPECS);
        let e = r.finish().unwrap_err();
        assert!(e.to_string().contains("\"bogus\""), "{e}");
    }
}
