//! The network parameters every object store takes, under the same names: how long to
//! wait, and how often and how long to try again. The names are those of Distribution's
//! azure driver (`max_retries`, `retry_delay`, `max_retry_delay`), the only one of its
//! drivers that has any, plus three of ours.
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `max_retries` | `5` | retries after the first attempt of an idempotent request (`-1` or `0`: none) |
//! | `retry_delay` | `100ms` | backoff before the first retry; it doubles on each retry, with full jitter |
//! | `max_retry_delay` | `5s` | cap of the backoff |
//! | `retry_budget` | `60s` | no new attempt starts this long after the first: with `idle_timeout`, it bounds an unanswered request (at most about `retry_budget` + `idle_timeout`) |
//! | `idle_timeout` | `30s` | a transfer that moves no byte for this long (waiting for an answer, a download or an upload that stalls) fails as a timeout, which is retried or resumed |
//! | `connect_timeout` | `10s` | time to open a connection (TCP and TLS) |
//!
//! A driver lists them with [`network_params!`](crate::network_params) around its own
//! parameter table and reads them with [`Network::read`].

use std::future::Future;
use std::time::Duration;

use driver_api::{ParamReader, Result, StorageError};
use serde_json::Value;

/// The network parameters (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// `max_retries`.
    pub max_retries: u32,
    /// `retry_delay`.
    pub retry_delay: Duration,
    /// `max_retry_delay`.
    pub max_retry_delay: Duration,
    /// `retry_budget`.
    pub retry_budget: Duration,
    /// `idle_timeout`.
    pub idle_timeout: Duration,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            max_retries: 5,
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(5),
            retry_budget: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A driver's parameter table with the network parameters appended: `network_params![
/// ParamSpec::new(..), ... ]` is a `&'static [ParamSpec]`.
#[macro_export]
macro_rules! network_params {
    ($($spec:expr),* $(,)?) => {
        &[
            $($spec,)*
            $crate::__private::ParamSpec::new("max_retries", $crate::__private::ParamKind::Any, "retries after the first attempt of an idempotent request (timeouts, broken connections, 408/429/5xx); -1 or 0: none").default_value("5"),
            $crate::__private::ParamSpec::new("retry_delay", $crate::__private::ParamKind::Duration, "backoff before the first retry; it doubles on each retry, with full jitter, up to max_retry_delay").default_value("100ms"),
            $crate::__private::ParamSpec::new("max_retry_delay", $crate::__private::ParamKind::Duration, "cap of the retry backoff").default_value("5s"),
            $crate::__private::ParamSpec::new("retry_budget", $crate::__private::ParamKind::Duration, "no new attempt of a request starts this long after its first (an unanswered request fails after about retry_budget, at most retry_budget + idle_timeout)").default_value("60s"),
            $crate::__private::ParamSpec::new("idle_timeout", $crate::__private::ParamKind::Duration, "a transfer that moves no byte for this long fails as a timeout (retried, or a read resumed)").default_value("30s"),
            $crate::__private::ParamSpec::new("connect_timeout", $crate::__private::ParamKind::Duration, "time to open a connection (TCP and TLS)").default_value("10s"),
        ]
    };
}

impl Network {
    /// Reads the network parameters from `r` (a reader over a table built with
    /// [`network_params!`](crate::network_params)).
    pub fn read(r: &mut ParamReader, driver: &'static str) -> Result<Self> {
        let d = Self::default();
        let n = Self {
            max_retries: max_retries(r.value("max_retries")?, driver)?,
            retry_delay: r.duration("retry_delay")?.unwrap_or(d.retry_delay),
            max_retry_delay: r.duration("max_retry_delay")?.unwrap_or(d.max_retry_delay),
            retry_budget: r.duration("retry_budget")?.unwrap_or(d.retry_budget),
            idle_timeout: r.duration("idle_timeout")?.unwrap_or(d.idle_timeout),
            connect_timeout: r.duration("connect_timeout")?.unwrap_or(d.connect_timeout),
        };
        for (key, v) in [
            ("idle_timeout", n.idle_timeout),
            ("connect_timeout", n.connect_timeout),
        ] {
            if v.is_zero() {
                return Err(invalid(driver, key, "a duration above zero"));
            }
        }
        Ok(Self {
            max_retry_delay: n.max_retry_delay.max(n.retry_delay),
            ..n
        })
    }
}

impl From<&Network> for Retry {
    fn from(n: &Network) -> Self {
        Retry::new(
            n.max_retries,
            n.retry_delay,
            n.max_retry_delay,
            n.retry_budget,
        )
    }
}

/// The retry policy of every driver, read from its network parameters: up to
/// `max_retries` retries after the first attempt, the wait before retry `n` drawn at
/// random from zero to `retry_delay * 2^n` (capped at `max_retry_delay`: exponential
/// backoff with full jitter, which keeps clients that failed together from retrying
/// together), a server's `Retry-After` honoured up to the cap, and no retry that would
/// start later than `retry_budget` after the first attempt.
///
/// [`run`](Self::run) drives the loop for an operation whose errors are
/// [`StorageError`]s; [`retrying`](Self::retrying) for any outcome a caller classifies
/// (driver-http's `SendRetry` retries HTTP answers by status with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    max_retries: u32,
    delay: Duration,
    max_delay: Duration,
    budget: Duration,
}

impl Retry {
    /// No retries at all (requests that are not idempotent).
    pub const NONE: Retry = Retry {
        max_retries: 0,
        delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        budget: Duration::ZERO,
    };

    /// A policy of `max_retries` retries, backoff from `delay` capped at `max_delay`,
    /// within `budget` of the first attempt.
    pub fn new(max_retries: u32, delay: Duration, max_delay: Duration, budget: Duration) -> Self {
        Self {
            max_retries,
            delay,
            max_delay: max_delay.max(delay),
            budget,
        }
    }

    /// Retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before retry `n` (from 0) of a request first sent at `started`, or `None`
    /// when the retries or the time budget are spent. `hint` is the server's
    /// `Retry-After`; it is honoured up to the cap, and only within the budget.
    pub fn next_delay(
        &self,
        n: u32,
        started: tokio::time::Instant,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        if n >= self.max_retries {
            return None;
        }
        let delay = hint.unwrap_or_else(|| self.backoff(n)).min(self.max_delay);
        (started.elapsed() + delay <= self.budget).then_some(delay)
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retryable
    /// ([`StorageError::is_retryable`]), or the policy is spent; returns the last outcome.
    pub async fn run<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retrying(attempt, |outcome| match outcome {
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, "retryable failure");
                Some(None)
            }
            _ => None,
        })
        .await
    }

    /// Runs `attempt` until `retry` says an outcome is final (`None`) or the policy is
    /// spent, and returns the last outcome. `retry` returns `Some(hint)` for an outcome
    /// worth another attempt, with the server's `Retry-After` if it gave one.
    pub async fn retrying<T, F, Fut>(
        &self,
        mut attempt: F,
        retry: impl Fn(&T) -> Option<Option<Duration>>,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        let started = tokio::time::Instant::now();
        let mut n = 0;
        loop {
            let outcome = attempt().await;
            let Some(hint) = retry(&outcome) else {
                return outcome;
            };
            let Some(delay) = self.next_delay(n, started, hint) else {
                return outcome;
            };
            tracing::debug!(attempt = n + 1, ?delay, "retrying");
            drop(outcome);
            tokio::time::sleep(delay).await;
            n += 1;
        }
    }

    /// Full jitter over `delay * 2^n`, capped.
    fn backoff(&self, n: u32) -> Duration {
        let cap = self
            .delay
            .saturating_mul(1u32 << n.min(16))
            .min(self.max_delay);
        cap.mul_f64(jitter())
    }
}

/// A number in [0, 1).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 10_000) as f64 / 10_000.0
}

fn invalid(driver: &'static str, key: &str, expected: &str) -> StorageError {
    StorageError::InvalidParameter {
        driver: driver.into(),
        key: key.into(),
        expected: expected.into(),
    }
}

/// `max_retries`: an integer in -1..=100 (-1, as in Distribution's azure driver: none).
fn max_retries(v: Option<Value>, driver: &'static str) -> Result<u32> {
    let n = match &v {
        None | Some(Value::Null) => Some(5),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(-1) => Ok(0),
        Some(n) if (0..=100).contains(&n) => Ok(n as u32),
        _ => Err(invalid(driver, "max_retries", "an integer in -1..=100")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driver_api::{Operation, ParamSpec, Parameters};

    static PARAMS: &[ParamSpec] = crate::network_params![ParamSpec::new(
        "bucket",
        driver_api::ParamKind::String,
        "a bucket"
    )];

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let r = Retry::new(
            9,
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        let mut below_half = 0;
        for n in 0..9 {
            for _ in 0..20 {
                let b = r.backoff(n);
                let cap = Duration::from_millis(100 * (1 << n)).min(Duration::from_secs(1));
                assert!(b < cap, "retry {n}: {b:?} vs cap {cap:?}");
                below_half += usize::from(b < cap / 2);
            }
        }
        assert!(
            below_half > 20,
            "full jitter: about half the waits are below half the cap"
        );
    }

    #[test]
    fn the_budget_and_the_count_end_the_retries() {
        let r = Retry::new(
            3,
            Duration::from_millis(1),
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        let now = tokio::time::Instant::now();
        assert!(r.next_delay(2, now, None).is_some());
        assert!(r.next_delay(3, now, None).is_none());
        let hinted = r.next_delay(0, now, Some(Duration::from_secs(9)));
        assert_eq!(hinted, Some(Duration::from_secs(5)), "Retry-After capped");
        let spent = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        let r = Retry::new(
            3,
            Duration::from_millis(1),
            Duration::from_secs(5),
            Duration::from_secs(1),
        );
        assert!(r.next_delay(0, spent, None).is_none(), "budget spent");
    }

    #[tokio::test]
    async fn run_retries_what_is_retryable_only() {
        let r = Retry::new(
            5,
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_secs(5),
        );
        let path = driver_api::StoragePath::new("/p").unwrap();
        let mut calls = 0;
        let got = r
            .run(|| {
                calls += 1;
                let n = calls;
                let path = path.clone();
                async move {
                    if n < 3 {
                        Err(StorageError::backend("t", Operation::Stat, &path, "busy")
                            .with_retryable(true))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(got, 3);
        let mut calls = 0;
        let err = r
            .run(|| {
                calls += 1;
                let path = path.clone();
                async move { Err::<(), _>(StorageError::backend("t", Operation::Stat, &path, "denied")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1, "{err}");
    }

    #[test]
    fn defaults_and_values() {
        let mut r = Parameters::new().reader("t", PARAMS);
        assert_eq!(Network::read(&mut r, "t").unwrap(), Network::default());
        r.finish().unwrap();
        let p = Parameters::new()
            .with("max_retries", -1)
            .with("idle_timeout", "2s")
            .with("retry_budget", "1m")
            .with("retry_delay", "10s")
            .with("max_retry_delay", "1s");
        let mut r = p.reader("t", PARAMS);
        let n = Network::read(&mut r, "t").unwrap();
        r.finish().unwrap();
        assert_eq!(n.max_retries, 0);
        assert_eq!(n.idle_timeout, Duration::from_secs(2));
        assert_eq!(n.retry_budget, Duration::from_secs(60));
        assert_eq!(
            n.max_retry_delay,
            Duration::from_secs(10),
            "raised to retry_delay"
        );
        for bad in [
            Parameters::new().with("max_retries", 101),
            Parameters::new().with("max_retries", "x"),
            Parameters::new().with("idle_timeout", "0s"),
        ] {
            let mut r = bad.reader("t", PARAMS);
            let e = Network::read(&mut r, "t").unwrap_err();
            assert!(matches!(e, StorageError::InvalidParameter { .. }), "{e}");
        }
    }
}
