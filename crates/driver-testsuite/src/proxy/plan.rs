//! Which requests the fault proxy spoils, and how: [`FaultPlan`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::fault::{Fault, FaultKind};

/// What a plan sees of a request when its head has arrived (the body has not yet).
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub(super) index: u64,
    pub(super) plan_index: u64,
    pub(super) connection: u64,
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body_len: Option<u64>,
    pub(super) head_len: u64,
}

impl RequestInfo {
    /// The request's number on this proxy, from 0, counting every request since it started.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The request's number under the current plan, from 0 when it was set
    /// ([`Proxy::set_plan`](super::Proxy::set_plan)).
    pub fn plan_index(&self) -> u64 {
        self.plan_index
    }

    /// The number of the client connection it came on, from 0.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// `GET`, `PUT`, …
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query (`/bucket/key?uploads`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target's path, before any `?`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The target's query, after the first `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header line as sent, name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body's length: `Some(0)` without a body, `None` if it is chunked.
    pub fn body_len(&self) -> Option<u64> {
        self.body_len
    }

    /// The head's length in bytes (request line to the empty line).
    pub fn head_len(&self) -> u64 {
        self.head_len
    }
}

/// The closure of a scripted plan.
type Script = dyn Fn(&RequestInfo) -> Option<Fault> + Send + Sync;

/// Decides, as each request head arrives, whether the proxy spoils that request and how.
///
/// ```
/// use std::time::Duration;
/// use driver_testsuite::proxy::{Fault, FaultKind, FaultPlan};
///
/// // Nothing.
/// let off = FaultPlan::none();
/// // 20 % of requests, drawn reproducibly from seed 7: resets, 5xx answers and delays
/// // (the defaults), plus stalls.
/// let random = FaultPlan::seeded(7, 0.2).weight(FaultKind::Stall, 1);
/// // Only the next request.
/// let once = FaultPlan::once(Fault::Status { code: 503, retry_after: Some(1) });
/// // By script: cut every upload of a part after 1000 bytes.
/// let script = FaultPlan::scripted(|r| {
///     (r.method() == "PUT" && r.query().is_some_and(|q| q.contains("partNumber=")))
///         .then_some(Fault::ResetRequest { after: 1000 })
/// });
/// # let _ = (off, random, once, script);
/// ```
#[derive(Clone)]
pub struct FaultPlan {
    kind: PlanKind,
}

#[derive(Clone)]
enum PlanKind {
    None,
    Scripted(Arc<Script>),
    Seeded(Seeded),
}

/// The parameters of a seeded plan.
#[derive(Clone, Debug)]
struct Seeded {
    seed: u64,
    rate: f64,
    weights: [u32; FaultKind::ALL.len()],
    statuses: Vec<u16>,
    retry_after: Option<u32>,
    delay_min: Duration,
    delay_max: Duration,
    cap: u64,
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PlanKind::None => f.write_str("FaultPlan::none()"),
            PlanKind::Scripted(_) => f.write_str("FaultPlan::scripted(..)"),
            PlanKind::Seeded(s) => f.debug_tuple("FaultPlan::seeded").field(s).finish(),
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::none()
    }
}

impl FaultPlan {
    /// No faults: the proxy passes everything on.
    pub fn none() -> Self {
        Self {
            kind: PlanKind::None,
        }
    }

    /// `script` decides for every request; `None` passes it on unharmed.
    pub fn scripted(
        script: impl Fn(&RequestInfo) -> Option<Fault> + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: PlanKind::Scripted(Arc::new(script)),
        }
    }

    /// `fault` for the first request under this plan, none after.
    pub fn once(fault: Fault) -> Self {
        Self::scripted(move |r| (r.plan_index() == 0).then(|| fault.clone()))
    }

    /// A share `rate` (0.2: one request in five, on average) of requests spoiled, each by a
    /// fault drawn from the weighted kinds, all from a PRNG keyed by `seed` and the request's
    /// [`plan_index`](RequestInfo::plan_index): the same seed and the same sequence of
    /// requests give the same faults.
    ///
    /// Default kinds, weight 1 each: the three resets, [`Status`](FaultKind::Status) and
    /// [`Delay`](FaultKind::Delay) — what every driver must absorb; stalls (which only a
    /// timeout ends) and corruption (which only a checksum catches) are added with
    /// [`weight`](Self::weight). Statuses are drawn from 500, 502, 503 and 504, delays from
    /// 20–500 ms. Byte positions fall uniformly inside the body where framing tells its
    /// length (into the head if it has none), else within the first 64 KiB of body
    /// ([`cap`](Self::cap)).
    pub fn seeded(seed: u64, rate: f64) -> Self {
        let mut weights = [0; FaultKind::ALL.len()];
        for kind in [
            FaultKind::ResetRequest,
            FaultKind::ResetResponse,
            FaultKind::ResetAfterResponse,
            FaultKind::Status,
            FaultKind::Delay,
        ] {
            if let Some(w) = weights.get_mut(kind.index()) {
                *w = 1;
            }
        }
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        Self {
            kind: PlanKind::Seeded(Seeded {
                seed,
                rate,
                weights,
                statuses: vec![500, 502, 503, 504],
                retry_after: None,
                delay_min: Duration::from_millis(20),
                delay_max: Duration::from_millis(500),
                cap: 64 << 10,
            }),
        }
    }

    fn seeded_mut(&mut self) -> Option<&mut Seeded> {
        match &mut self.kind {
            PlanKind::Seeded(s) => Some(s),
            _ => None,
        }
    }

    /// Seeded plans: draws `kind` with this relative weight (0 never).
    /// No effect on other plans.
    pub fn weight(mut self, kind: FaultKind, weight: u32) -> Self {
        if let Some(w) = self
            .seeded_mut()
            .and_then(|s| s.weights.get_mut(kind.index()))
        {
            *w = weight;
        }
        self
    }

    /// Seeded plans: draws only from `kinds`, weight 1 each. No effect on other plans.
    pub fn only(mut self, kinds: &[FaultKind]) -> Self {
        if let Some(s) = self.seeded_mut() {
            s.weights = [0; FaultKind::ALL.len()];
            for kind in kinds {
                if let Some(w) = s.weights.get_mut(kind.index()) {
                    *w = 1;
                }
            }
        }
        self
    }

    /// Seeded plans: the statuses [`Status`](Fault::Status) faults answer with, drawn
    /// uniformly (an empty list keeps the current one). No effect on other plans.
    pub fn statuses(mut self, codes: &[u16]) -> Self {
        if let Some(s) = self.seeded_mut() {
            if !codes.is_empty() {
                s.statuses = codes.to_vec();
            }
        }
        self
    }

    /// Seeded plans: the `Retry-After` (seconds) sent with 429 and 503 answers; none by
    /// default. No effect on other plans.
    pub fn retry_after(mut self, secs: Option<u32>) -> Self {
        if let Some(s) = self.seeded_mut() {
            s.retry_after = secs;
        }
        self
    }

    /// Seeded plans: [`Delay`](Fault::Delay)s are drawn uniformly from `min..=max`.
    /// No effect on other plans.
    pub fn delays(mut self, min: Duration, max: Duration) -> Self {
        if let Some(s) = self.seeded_mut() {
            s.delay_min = min.min(max);
            s.delay_max = max.max(min);
        }
        self
    }

    /// Seeded plans: byte positions in bodies of unknown length (chunked, or read to the
    /// end) are drawn from the first `cap` bytes (a body that ends earlier is cut, or
    /// corrupted, at its end). No effect on other plans.
    pub fn cap(mut self, cap: u64) -> Self {
        if let Some(s) = self.seeded_mut() {
            s.cap = cap.max(1);
        }
        self
    }

    /// The fault for `info` (whose `plan_index` numbers it under this plan), positions
    /// still to be placed once the message's framing is known.
    pub(super) fn decide(&self, info: &RequestInfo) -> Option<Planned> {
        match &self.kind {
            PlanKind::None => None,
            PlanKind::Scripted(script) => script(info).map(Planned::from),
            PlanKind::Seeded(s) => s.decide(info),
        }
    }
}

impl Seeded {
    fn decide(&self, info: &RequestInfo) -> Option<Planned> {
        let mut rng = Rng::for_request(self.seed, info.plan_index);
        if rng.unit() >= self.rate {
            return None;
        }
        let applies = |kind: FaultKind| match kind {
            FaultKind::CorruptRequest => info.body_len != Some(0),
            FaultKind::CorruptResponse => !info.method.eq_ignore_ascii_case("HEAD"),
            _ => true,
        };
        let weight = |kind: FaultKind| {
            if applies(kind) {
                u64::from(self.weights.get(kind.index()).copied().unwrap_or(0))
            } else {
                0
            }
        };
        let total: u64 = FaultKind::ALL.into_iter().map(weight).sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.below(total);
        let kind = FaultKind::ALL.into_iter().find(|&k| {
            let w = weight(k);
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        })?;
        let spot = Spot::Fraction {
            at: rng.unit(),
            cap: self.cap,
        };
        Some(match kind {
            FaultKind::ResetRequest => Planned::ResetRequest(spot),
            FaultKind::ResetResponse => Planned::ResetResponse(spot),
            FaultKind::ResetAfterResponse => Planned::ResetAfterResponse,
            FaultKind::Status => {
                let i = rng.below(self.statuses.len() as u64) as usize;
                let code = self.statuses.get(i).copied().unwrap_or(503);
                let retry_after = if code == 429 || code == 503 {
                    self.retry_after
                } else {
                    None
                };
                Planned::Status { code, retry_after }
            }
            FaultKind::Delay => {
                let span = self.delay_max.saturating_sub(self.delay_min);
                Planned::Delay(self.delay_min + span.mul_f64(rng.unit()))
            }
            FaultKind::Stall => Planned::Stall(spot),
            FaultKind::StallRequest => Planned::StallRequest(spot),
            FaultKind::CorruptRequest => Planned::Corrupt {
                response: false,
                at: spot,
            },
            FaultKind::CorruptResponse => Planned::Corrupt {
                response: true,
                at: spot,
            },
        })
    }
}

/// A position in a message: exact, or a fraction of what framing will tell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Spot {
    /// This many bytes.
    Bytes(u64),
    /// `at` (in `[0, 1)`) of the body if its length is known, else of `cap` bytes.
    Fraction { at: f64, cap: u64 },
}

impl Spot {
    /// Where to cut a message whose head is `head` bytes and body `body` bytes (`None`:
    /// unknown): counted from the head's start. A fraction falls inside the body when it
    /// has one (so the cut leaves it short), inside the head when it has none.
    pub(super) fn cut(self, head: u64, body: Option<u64>) -> u64 {
        match self {
            Spot::Bytes(n) => n,
            Spot::Fraction { at, cap } => match body {
                Some(0) => scale(at, head),
                Some(len) => head.saturating_add(scale(at, len)),
                None => head.saturating_add(scale(at, cap)),
            },
        }
    }

    /// The body byte to corrupt in a body of `body` bytes (`None`: unknown).
    pub(super) fn offset(self, body: Option<u64>) -> u64 {
        match self {
            Spot::Bytes(n) => n,
            Spot::Fraction { at, cap } => scale(at, body.unwrap_or(cap)),
        }
    }
}

/// `at` of `len`, below `len` (0 for an empty length).
fn scale(at: f64, len: u64) -> u64 {
    ((at * len as f64) as u64).min(len.saturating_sub(1))
}

/// A fault as planned: positions may wait for the message's framing.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Planned {
    ResetRequest(Spot),
    ResetResponse(Spot),
    ResetAfterResponse,
    Status { code: u16, retry_after: Option<u32> },
    Delay(Duration),
    Stall(Spot),
    StallRequest(Spot),
    Corrupt { response: bool, at: Spot },
}

impl From<Fault> for Planned {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::ResetRequest { after } => Planned::ResetRequest(Spot::Bytes(after)),
            Fault::ResetResponse { after } => Planned::ResetResponse(Spot::Bytes(after)),
            Fault::ResetAfterResponse => Planned::ResetAfterResponse,
            Fault::Status { code, retry_after } => Planned::Status { code, retry_after },
            Fault::Delay(d) => Planned::Delay(d),
            Fault::Stall { after } => Planned::Stall(Spot::Bytes(after)),
            Fault::StallRequest { after } => Planned::StallRequest(Spot::Bytes(after)),
            Fault::Corrupt { response, offset } => Planned::Corrupt {
                response,
                at: Spot::Bytes(offset),
            },
        }
    }
}

impl Planned {
    /// Whether the fault acts on the request's way to the server (else on the response's).
    pub(super) fn on_request(&self) -> bool {
        matches!(
            self,
            Planned::ResetRequest(_)
                | Planned::StallRequest(_)
                | Planned::Status { .. }
                | Planned::Corrupt {
                    response: false,
                    ..
                }
        )
    }
}

/// splitmix64: a tiny, good-enough PRNG; each request gets its own stream, keyed by the
/// seed and its number, so draws do not depend on how requests interleave.
pub(super) struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(super) fn for_request(seed: u64, n: u64) -> Self {
        Rng(mix(seed ^ mix(n.wrapping_mul(GOLDEN).wrapping_add(GOLDEN))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 if `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}
