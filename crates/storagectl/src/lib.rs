//! `storagectl`: the operator's command-line tool for the storage drivers.
//!
//! It reads the `storage:` section of a Distribution `config.yml` (plus Distribution's
//! `REGISTRY_STORAGE*` environment overrides, plus `--driver`/`--param` flags), creates the
//! driver through the factory, and runs one command: put/get/cat/ls/stat/mv/rm/walk/du/url
//! on single paths, `sync` between two storages, `check` (the conformance suite under a
//! random prefix), `bench` (the shared benchmarks) and `gc` (Distribution's garbage
//! collection, safe while the registry runs). See `docs/storagectl.md`.
//!
//! The binary is a thin `main` over [`run`]; the modules are usable on their own:
//! [`config`] for Distribution-compatible configuration, [`sync`] for tree copies, [`gc`]
//! for garbage collection.
//!
//! Exit codes: 0 success, 1 an operation failed, 2 usage or configuration error,
//! 130 interrupted by Ctrl-C (uploads in flight are cancelled first).

pub mod cli;
pub mod config;
pub mod gc;
pub mod interrupt;
pub mod output;
pub mod progress;
pub mod sync;

mod checkcmd;
mod listing;
mod transfer;
mod uploads;

use std::io::{IsTerminal, Write};

use driver_api::{factory, Driver, RedirectRequest, StorageError};
use serde_json::json;

use crate::cli::{Cli, Command, ConfigAction, UploadsAction, UrlMethod};
use crate::config::{ConfigError, CreateError, Sources, StorageConfig};
use crate::interrupt::Interrupt;
use crate::progress::Progress;

// Link every driver this build ships, so the factory finds them by name.
use driver_azure as _;
use driver_filesystem as _;
use driver_gcs as _;
use driver_oss as _;
use driver_rados as _;
use driver_swift as _;
// Out-of-process drivers: `--driver NAME` runs `registry-storage-NAME` when no linked
// driver has that name.
use driver_inmemory as _;
use driver_ipc as _;
use driver_s3 as _;

/// What went wrong, and which exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Bad configuration (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A storage operation failed (exit 1).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Local I/O failed (exit 1).
    #[error("{what}: {source}")]
    Io {
        /// The local file or stream.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran but did not succeed (failed cases, failed copies...) (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C (exit 130).
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Interrupted => 130,
            _ => 1,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<CreateError> for CliError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Config(c) => CliError::Config(c),
            CreateError::Backend(s) => CliError::Storage(s),
        }
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// What every command gets.
pub struct App {
    /// The configuration in effect.
    pub config: StorageConfig,
    /// `--json`.
    pub json: bool,
    /// Progress bars, or not.
    pub progress: Progress,
    /// Ctrl-C.
    pub interrupt: Interrupt,
}

impl App {
    /// Creates the configured driver.
    pub async fn driver(&self) -> CliResult<Driver> {
        Ok(self.config.create().await?)
    }
}

/// Prints to stdout; a closed pipe (`storagectl ls | head`) is not an error.
pub(crate) fn emit(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io("stdout", e)),
    }
}

pub(crate) fn emit_json(value: &serde_json::Value) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("encoding JSON: {e}")))?;
    emit(&format!("{text}\n"))
}

/// Runs one parsed command line. `env` is the process environment (passed in so tests can
/// control it).
pub async fn run(cli: Cli, env: Vec<(String, String)>) -> CliResult {
    let g = &cli.global;
    // Commands that need no storage.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "storagectl", &mut buf);
            return emit(&String::from_utf8_lossy(&buf));
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| CliError::io("man page", e))?;
            return emit(&String::from_utf8_lossy(&buf));
        }
        Command::Drivers => return drivers(g.json),
        _ => {}
    }

    let sources = Sources {
        file: g.config.clone(),
        driver: g.driver.clone(),
        params: g.params.clone(),
        use_env: !g.no_env,
    };
    let (config, used_default) = StorageConfig::load(&sources, env)?;
    // `sync` between two other storages never touches the configured one: say nothing
    // about it then.
    let uses_config = match &cli.command {
        Command::Sync { src, dst, .. } => [src, dst]
            .into_iter()
            .any(|s| sync::Spec::parse(s).map_or(true, |s| s.store == sync::Store::Configured)),
        _ => true,
    };
    if used_default
        && uses_config
        && !g.quiet
        && !std::path::Path::new(config::DEFAULT_ROOT).exists()
    {
        eprintln!(
            "storagectl: no configuration given; using the filesystem driver at {} \
             (pass --config, --driver or set REGISTRY_STORAGE to choose)",
            config::DEFAULT_ROOT
        );
    }
    if !config.middleware.is_empty() && uses_config && !g.quiet {
        eprintln!(
            "storagectl: warning: storage middleware {} not applied (no storage middleware \
             is implemented yet)",
            config.middleware.join(", ")
        );
    }
    let app = App {
        config,
        json: g.json,
        progress: Progress::new(!g.quiet && std::io::stderr().is_terminal()),
        interrupt: Interrupt::install(),
    };

    match cli.command {
        Command::Config {
            action: ConfigAction::Show,
        } => config_show(&app),
        Command::Put { src, dst } => transfer::put(&app, &src, &dst).await,
        Command::Get { src, dst, offset } => {
            transfer::get(&app, &src, dst.as_deref(), offset).await
        }
        Command::Cat { path, offset } => transfer::get(&app, &path, Some("-"), offset).await,
        Command::Ls {
            path,
            long,
            recursive,
        } => listing::ls(&app, &path, long, recursive).await,
        Command::Stat { path } => listing::stat(&app, &path).await,
        Command::Mv { src, dst } => {
            let d = app.driver().await?;
            d.rename(&src, &dst).await?;
            Ok(())
        }
        Command::Rm { path, recursive } => listing::rm(&app, &path, recursive).await,
        Command::Walk {
            path,
            start_after,
            files,
        } => listing::walk(&app, &path, start_after.as_deref(), files).await,
        Command::Du { path } => listing::du(&app, &path).await,
        Command::Uploads { action } => match action {
            UploadsAction::Ls { path, older_than } => uploads::ls(&app, &path, older_than).await,
            UploadsAction::Purge {
                path,
                older_than,
                dry_run,
            } => uploads::purge(&app, &path, older_than, dry_run).await,
        },
        Command::Url {
            path,
            method,
            expires,
        } => url(&app, &path, method, expires).await,
        Command::Sync {
            src,
            dst,
            src_params,
            dst_params,
            jobs,
            dry_run,
            checksum,
            delete,
        } => {
            sync::command(
                &app,
                sync::SyncArgs {
                    src: &src,
                    dst: &dst,
                    src_params: &src_params,
                    dst_params: &dst_params,
                    jobs,
                    dry_run,
                    checksum,
                    delete,
                },
            )
            .await
        }
        Command::Check {
            filter,
            jobs,
            full,
            timeout,
        } => checkcmd::check(&app, filter.as_deref(), jobs, full, timeout).await,
        Command::Bench {
            time,
            sizes,
            walk_files,
        } => checkcmd::bench(&app, time, &sizes, walk_files).await,
        Command::Gc {
            dry_run,
            delete_untagged,
            min_age,
            jobs,
        } => {
            gc::command(
                &app,
                gc::GcArgs {
                    dry_run,
                    delete_untagged,
                    min_age,
                    jobs,
                },
            )
            .await
        }
        Command::Drivers | Command::Completions { .. } | Command::Man => Ok(()),
    }
}

fn drivers(json: bool) -> CliResult {
    let all = factory::registered_drivers();
    if json {
        let list: Vec<_> = all
            .iter()
            .map(|f| {
                json!({
                    "name": f.name,
                    "description": f.description,
                    "parameters": f.parameters.iter().map(|p| json!({
                        "name": p.name,
                        "kind": p.kind.to_string(),
                        "required": p.required,
                        "default": p.default,
                        "secret": p.secret,
                        "description": p.description,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return emit_json(&json!(list));
    }
    let mut out = String::new();
    for f in all {
        out.push_str(&format!("{}: {}\n", f.name, f.description));
        if f.parameters.is_empty() {
            out.push_str("  (no parameters)\n");
        }
        let rows: Vec<Vec<String>> = f
            .parameters
            .iter()
            .map(|p| {
                vec![
                    format!("  {}", p.name),
                    p.kind.to_string(),
                    if p.required {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    p.default.unwrap_or("-").to_owned(),
                    p.description.to_owned(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&output::table(
                &["  parameter", "type", "required", "default", "meaning"],
                "lllll",
                &rows,
            ));
        }
        out.push('\n');
    }
    emit(&out)
}

fn config_show(app: &App) -> CliResult {
    let shown = app.config.redacted();
    if app.json {
        return emit_json(&shown);
    }
    let yaml = serde_norway::to_string(&shown)
        .map_err(|e| CliError::Failed(format!("encoding YAML: {e}")))?;
    emit(&yaml)
}

async fn url(app: &App, path: &str, method: UrlMethod, expires: Option<u64>) -> CliResult {
    if app.config.redirect_disabled {
        return Err(CliError::Failed(format!(
            "redirects are disabled by storage.redirect.disable ({})",
            app.config.origin
        )));
    }
    let d = app.driver().await?;
    let mut req = match method {
        UrlMethod::Get => RedirectRequest::get(),
        UrlMethod::Head => RedirectRequest::head(),
    };
    req.expires_in = expires.map(std::time::Duration::from_secs);
    match d.redirect_url(&req, path).await? {
        Some(u) => emit(&format!("{u}\n")),
        None => Err(CliError::Failed(format!(
            "the {} driver has no redirect URLs: clients are served through the registry",
            d.name()
        ))),
    }
}
