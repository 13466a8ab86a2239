//! The command line, as clap definitions (also used to generate completions and the man
//! page).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate a registry's storage from the command line: the same drivers, configured
/// the way Distribution's config.yml configures them.
///
/// With no --config, --driver or REGISTRY_STORAGE* variable, storagectl uses the
/// filesystem driver rooted at ./data.
#[derive(Debug, Parser)]
#[command(
    name = "storagectl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// A Distribution config.yml whose `storage:` section to use.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "REGISTRY_CONFIGURATION_PATH",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Use this driver (replaces the configured one; parameters from --param).
    #[arg(long, short = 'd', global = true, value_name = "NAME")]
    pub driver: Option<String>,
    /// Set a driver parameter (repeatable); the value is read as YAML, like an environment
    /// override.
    #[arg(long = "param", short = 'p', global = true, value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Ignore REGISTRY_STORAGE* / REGISTRY_MIDDLEWARE* environment overrides.
    #[arg(long, global = true)]
    pub no_env: bool,
    /// Machine-readable output (ls, stat, walk, du, check, bench, drivers, config show).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars, notices or log lines (errors are still printed).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// More logging (-v: info, -vv: debug, -vvv: trace); RUST_LOG also works.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the registered drivers and their parameters.
    Drivers,
    /// Show the storage configuration in effect (secrets redacted).
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Upload a local file (or `-` for stdin) to DST.
    Put {
        /// Local file, or `-` for standard input.
        src: String,
        /// Destination path in storage.
        dst: String,
    },
    /// Download SRC to a local file (default: its file name), or `-` for stdout.
    Get {
        /// Path in storage.
        src: String,
        /// Local file, or `-` for standard output.
        dst: Option<String>,
        /// Start reading at this byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Write an object's content to stdout.
    Cat {
        /// Path in storage.
        path: String,
        /// Start reading at this byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// List a directory.
    Ls {
        /// Directory (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// Long format: type, size, modification time.
        #[arg(short = 'l', long)]
        long: bool,
        /// Everything below, recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Show a path's size, type and modification time.
    Stat {
        /// Path in storage.
        path: String,
    },
    /// Move (rename) SRC to DST.
    Mv {
        /// Existing file.
        src: String,
        /// New path (replaced if it exists).
        dst: String,
    },
    /// Delete a file, or a directory and everything below it with -r.
    Rm {
        /// Path in storage.
        path: String,
        /// Allow deleting a directory and its contents.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Print every file and directory below PATH, in lexical order.
    Walk {
        /// Where to start (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// Resume after this path (exclusive), as Distribution's walk hint.
        #[arg(long, value_name = "PATH")]
        start_after: Option<String>,
        /// Print files only.
        #[arg(long)]
        files: bool,
    },
    /// Total size and file count below PATH.
    Du {
        /// Where to start (default: the root).
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a redirect URL for PATH (e.g. a presigned URL), if the driver has one.
    Url {
        /// Path in storage.
        path: String,
        /// HTTP method the URL is for.
        #[arg(long, value_enum, default_value_t = UrlMethod::Get)]
        method: UrlMethod,
        /// Validity in seconds (the driver bounds it).
        #[arg(long, value_name = "SECS")]
        expires: Option<u64>,
    },
    /// Copy a tree from one storage to another; re-running skips what is already there.
    ///
    /// A SPEC is `PATH` (the configured storage), `FILE.yml:PATH` (the storage section of
    /// another Distribution config) or `DRIVER:PATH` (a driver by name, parameters from
    /// --src-param / --dst-param).
    Sync {
        /// Source spec.
        src: String,
        /// Destination spec.
        dst: String,
        /// Parameter for a `DRIVER:PATH` source (repeatable).
        #[arg(long = "src-param", value_name = "KEY=VALUE")]
        src_params: Vec<String>,
        /// Parameter for a `DRIVER:PATH` destination (repeatable).
        #[arg(long = "dst-param", value_name = "KEY=VALUE")]
        dst_params: Vec<String>,
        /// Files copied at once.
        #[arg(long, short = 'j', default_value_t = 8)]
        jobs: usize,
        /// Only report what would be copied (and deleted).
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Compare the content of every file of equal size (both sides are read), not
        /// only small ones; otherwise a large file that is not a content-addressed blob
        /// counts as unchanged when the destination's copy is at least as new.
        #[arg(long)]
        checksum: bool,
        /// Delete destination files the source does not have (after every copy
        /// succeeded).
        #[arg(long)]
        delete: bool,
    },
    /// Run the conformance suite against the configured storage, under a random prefix
    /// that is removed afterwards.
    Check {
        /// Only cases whose name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        /// Cases run at once.
        #[arg(long, short = 'j', default_value_t = 4)]
        jobs: usize,
        /// Distribution's full sizes (5 GiB stream) instead of the quick defaults.
        #[arg(long)]
        full: bool,
        /// Per-case timeout in seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
    },
    /// Time the shared benchmarks against the configured storage (ops/s and MB/s).
    Bench {
        /// Seconds spent on each benchmark.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        time: f64,
        /// Object sizes in bytes for put_get and stream (K/M/G suffixes allowed).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0,1K,1M",
            value_name = "SIZES"
        )]
        sizes: Vec<String>,
        /// Files in the walk benchmark (0 leaves it out).
        #[arg(long, default_value_t = 1000, value_name = "N")]
        walk_files: usize,
    },
    /// Garbage collection: delete blobs no manifest references, as Distribution's
    /// `registry garbage-collect` does, with concurrent reads and flat walks, and safe
    /// while the registry runs (see --min-age).
    ///
    /// Prints Distribution's lines (marking, eligible for deletion, the summary) so the two
    /// tools' answers can be compared.
    Gc {
        /// Only report what would be deleted; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Also delete manifests that no tag names (and what only they reference); a
        /// manifest an image index references is kept.
        #[arg(long, short = 'm')]
        delete_untagged: bool,
        /// Spare blobs and manifests changed more recently than this (uploads, mounts and
        /// pushes in flight); `0s` collects everything unreferenced, as Distribution does.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_age)]
        min_age: std::time::Duration,
        /// Manifests read and paths deleted at once.
        #[arg(long, short = 'j', default_value_t = 16)]
        jobs: usize,
    },
    /// Uploads that never completed: resumable uploads left closed, uploads whose writer
    /// was killed or whose answer was lost, temporary files of interrupted writes.
    Uploads {
        /// What to do with them.
        #[command(subcommand)]
        action: UploadsAction,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// `config` sub-actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective storage configuration, secrets redacted.
    Show,
}

/// `uploads` sub-actions.
#[derive(Debug, Subcommand)]
pub enum UploadsAction {
    /// List them with their kind, age and size.
    Ls {
        /// Where to look, at and below (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// Only those unchanged for at least this long (`30m`, `24h`, `7d` as `168h`).
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
    },
    /// Remove those older than --older-than; committed files are never touched.
    Purge {
        /// Where to look, at and below (default: the root).
        #[arg(default_value = "/")]
        path: String,
        /// Only those unchanged for at least this long: an upload in progress keeps
        /// writing, so a generous age spares it.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_age)]
        older_than: std::time::Duration,
        /// Only report what would be removed.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

/// An age for `--older-than`: Go's duration syntax (`90s`, `30m`, `24h`).
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    driver_api::factory::parse_go_duration(s.trim())
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 30m, 24h)"))
}

/// Methods for `url`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UrlMethod {
    /// GET.
    Get,
    /// HEAD.
    Head,
}
