//! Progress bars on stderr, only when it is a terminal (and not `--quiet`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress bars, or hidden ones.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Bars are drawn when `enabled` (stderr is a terminal and `--quiet` was not given).
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// A byte-transfer bar, with a known total or as a spinner with a byte count.
    pub fn bytes(&self, total: Option<u64>, message: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                .with_style(style(
                    "[{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}",
                )),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_style(style("{spinner} {bytes} {binary_bytes_per_sec} {wide_msg}")),
        };
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A spinner counting items of unknown total (entries walked).
    pub fn counter(&self, message: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style("{spinner} {pos} {elapsed} {wide_msg}"));
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A counter bar for items (files, cases).
    pub fn items(&self, total: u64, message: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style("[{bar:30}] {pos}/{len} {elapsed} {wide_msg}"));
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
