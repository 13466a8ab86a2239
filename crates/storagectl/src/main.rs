//! The `storagectl` binary: parses the command line, sets up logging and the runtime, runs
//! the command and turns its outcome into an exit code (0 ok, 1 failed, 2 usage or
//! configuration error, 130 interrupted).

use clap::Parser;
use storagectl::cli::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (2).
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storagectl: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    // The command runs as a task on the runtime's workers, not in `block_on`: a driver's
    // answer (an IPC child's, an HTTP response) then wakes it on the worker where it
    // arrived, instead of waking a thread parked in `block_on` as well.
    let result = runtime.block_on(async move {
        match tokio::spawn(storagectl::run(cli, env)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    });
    // Do not wait for blocking tasks still parked in the pool (e.g. a stdin read).
    runtime.shutdown_background();
    if let Err(e) = result {
        eprintln!("storagectl: {e}");
        std::process::exit(e.exit_code());
    }
}

/// `-v` raises the level; `-q` alone silences log lines (warnings of retries and the
/// like): the command's own error is still printed. `RUST_LOG` overrides both.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if quiet => "off",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
