//! Ctrl-C as a value every long operation can wait on, so uploads are cancelled (not just
//! dropped) and the process exits with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Set once when the user presses Ctrl-C (SIGINT).
#[derive(Clone, Default)]
pub struct Interrupt(Arc<(AtomicBool, Notify)>);

impl Interrupt {
    /// Listens for Ctrl-C in the background (on the current runtime).
    pub fn install() -> Self {
        let me = Self::default();
        let flag = me.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.trigger();
            }
        });
        me
    }

    /// Marks the interrupt as happened and wakes every waiter.
    pub fn trigger(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_set(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// Completes when Ctrl-C is (or was) pressed.
    pub async fn wait(&self) {
        loop {
            let notified = self.0 .1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
