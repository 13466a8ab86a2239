//! Runs the fault proxy in the foreground:
//!
//! ```text
//! fault_proxy <upstream host:port> [--seed N] [--rate 0.2]
//!             [--kinds reset,status,delay,stall,corrupt] [--statuses 500,503,429]
//! fault_proxy <upstream host:port> --delay MS
//! ```
//!
//! Prints `http://127.0.0.1:<port>` (point the driver there), then the counters every 10 s
//! and on Ctrl-C. `--delay MS` runs a latency proxy instead of the fault plan
//! ([`Proxy::delay`]): no faults, every byte arrives `MS` later in each direction, so each
//! request's round trip takes `2 × MS` longer (`--delay 10` adds 20 ms per request); it
//! takes none of the fault flags and has no counters to print. `--kinds` takes groups (`reset`: the three resets, `stall`: both stalls,
//! `corrupt`: both directions, `status`, `delay`) or single kinds (`reset-after-response`,
//! …); without it, the seeded plan's defaults (resets, status, delay). Without `--seed`, one
//! is picked and printed, to replay the run. `RUST_LOG=driver_testsuite::proxy=debug`
//! logs every fault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driver_testsuite::proxy::{FaultKind, FaultPlan, Proxy};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: fault_proxy <upstream host:port> [--seed N] [--rate 0.2] \
                     [--kinds reset,status,delay,stall,corrupt] [--statuses 500,503]\n       \
                     fault_proxy <upstream host:port> --delay MS";

fn usage(why: &str) -> ! {
    eprintln!("{why}\n{USAGE}");
    std::process::exit(2)
}

fn bad(flag: &str, value: &str) -> ! {
    usage(&format!("bad value for {flag}: {value}"))
}

/// `--kinds`: groups or single kinds, comma-separated.
fn kinds(list: &str) -> Vec<FaultKind> {
    let mut kinds = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let group: &[FaultKind] = match name {
            "reset" => &[
                FaultKind::ResetRequest,
                FaultKind::ResetResponse,
                FaultKind::ResetAfterResponse,
            ],
            "stall" => &[FaultKind::Stall, FaultKind::StallRequest],
            "corrupt" => &[FaultKind::CorruptRequest, FaultKind::CorruptResponse],
            one => match one.parse::<FaultKind>() {
                Ok(kind) => {
                    kinds.push(kind);
                    continue;
                }
                Err(e) => usage(&e.to_string()),
            },
        };
        kinds.extend_from_slice(group);
    }
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

fn main() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let mut args = std::env::args().skip(1);
    let upstream: SocketAddr = args
        .next()
        .and_then(|a| {
            a.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_socket_addrs()
                .ok()?
                .next()
        })
        .unwrap_or_else(|| usage("no upstream host:port"));
    let mut seed: Option<u64> = None;
    let mut rate: f64 = 0.2;
    let mut only: Option<Vec<FaultKind>> = None;
    let mut statuses: Vec<u16> = Vec::new();
    let mut delay: Option<u64> = None;
    let mut fault_flags = false;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        fault_flags |= flag != "--delay";
        match flag.as_str() {
            "--delay" => delay = Some(value.parse().unwrap_or_else(|_| bad(&flag, &value))),
            "--seed" => seed = Some(value.parse().unwrap_or_else(|_| bad(&flag, &value))),
            "--rate" => rate = value.parse().unwrap_or_else(|_| bad(&flag, &value)),
            "--kinds" => only = Some(kinds(&value)),
            "--statuses" => {
                statuses = value
                    .split(',')
                    .map(|c| c.trim().parse().unwrap_or_else(|_| bad(&flag, &value)))
                    .collect();
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if let Some(ms) = delay {
        if fault_flags {
            usage("--delay takes no fault flags (--seed, --rate, --kinds, --statuses)");
        }
        run_delay(upstream, Duration::from_millis(ms));
        return;
    }
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut plan = FaultPlan::seeded(seed, rate).statuses(&statuses);
    if let Some(kinds) = &only {
        plan = plan.only(kinds);
    }

    driver_testsuite::runtime().block_on(async {
        let proxy = Proxy::faults(upstream, plan)
            .await
            .expect("start the proxy");
        println!("{}", proxy.url());
        let kinds = match &only {
            Some(kinds) => kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
            None => "defaults".to_owned(),
        };
        eprintln!("to {upstream}: --seed {seed} --rate {rate}, kinds {kinds}");
        let mut every = tokio::time::interval(Duration::from_secs(10));
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => println!("{}", proxy.stats()),
                _ = tokio::signal::ctrl_c() => {
                    println!("{}", proxy.stats());
                    break;
                }
            }
        }
    });
}

/// `--delay MS`: a latency proxy until Ctrl-C.
fn run_delay(upstream: SocketAddr, delay: Duration) {
    driver_testsuite::runtime().block_on(async {
        let proxy = Proxy::delay(upstream, delay)
            .await
            .expect("start the proxy");
        println!("{}", proxy.url());
        eprintln!(
            "to {upstream}: --delay {} ms each way, {} ms per round trip",
            delay.as_millis(),
            2 * delay.as_millis()
        );
        tokio::signal::ctrl_c().await.expect("wait for Ctrl-C");
    });
}
