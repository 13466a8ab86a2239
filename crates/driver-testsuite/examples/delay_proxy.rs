//! Runs the delay proxy in the foreground:
//! `delay_proxy <upstream host:port> <delay ms> [window KiB]`; prints
//! `http://127.0.0.1:<port>` and proxies until killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let upstream = args
        .get(1)
        .and_then(|a| a.trim_start_matches("http://").parse().ok())
        .expect("usage: delay_proxy <upstream host:port> <delay ms>");
    let ms: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let window: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1 << 20);
    driver_testsuite::runtime().block_on(async {
        let p =
            driver_testsuite::proxy::Proxy::link(upstream, Duration::from_millis(ms), window << 10)
                .await
                .expect("start the proxy");
        println!("{}", p.url());
        std::future::pending::<()>().await;
    });
}
