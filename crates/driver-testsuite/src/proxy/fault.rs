//! What the fault proxy can do to one request, and its counters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One fault, applied to one request (see the [module docs](super) for what each models).
///
/// Byte counts `after` cover the whole message, head included; `offset` counts body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass `after` bytes of the request to the server, then reset both connections (after
    /// the whole request, if it is shorter).
    ResetRequest {
        /// Request bytes (head and body) the server receives.
        after: u64,
    },
    /// Pass the request, deliver `after` bytes of the response, then reset the client's
    /// connection (the server's is closed). A shorter response is delivered whole, then the
    /// connection is reset.
    ResetResponse {
        /// Response bytes (heads and body) the client receives.
        after: u64,
    },
    /// Deliver the whole response, then reset the client's connection.
    ResetAfterResponse,
    /// Answer the request with this status (empty body), without passing it on; its body is
    /// read and dropped first (unless it waits for `100 Continue`: then the answer comes at
    /// once and the connection is closed after it).
    Status {
        /// A final status, 200–599.
        code: u16,
        /// A `Retry-After` header in seconds, if any.
        retry_after: Option<u32>,
    },
    /// Hold the (final) response head back this long.
    Delay(Duration),
    /// Pass the request, deliver `after` bytes of the response, then move nothing either
    /// way, holding both connections open until the client closes or the proxy is dropped
    /// (after the whole response, if it is shorter: the next request hangs).
    Stall {
        /// Response bytes (heads and body) the client receives.
        after: u64,
    },
    /// Pass `after` bytes of the request, then stop reading from the client and stop
    /// passing anything on, holding both connections open (a stalled upload; after the
    /// whole request, if it is shorter: its answer never comes).
    StallRequest {
        /// Request bytes (head and body) the server receives.
        after: u64,
    },
    /// Flip one bit of the body at `offset` (the last byte if the body is shorter; an empty
    /// body is left alone and the fault not counted).
    Corrupt {
        /// The response's body, else the request's.
        response: bool,
        /// Body byte to damage.
        offset: u64,
    },
}

impl Fault {
    /// Which kind of fault this is.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::ResetRequest { .. } => FaultKind::ResetRequest,
            Fault::ResetResponse { .. } => FaultKind::ResetResponse,
            Fault::ResetAfterResponse => FaultKind::ResetAfterResponse,
            Fault::Status { .. } => FaultKind::Status,
            Fault::Delay(_) => FaultKind::Delay,
            Fault::Stall { .. } => FaultKind::Stall,
            Fault::StallRequest { .. } => FaultKind::StallRequest,
            Fault::Corrupt {
                response: false, ..
            } => FaultKind::CorruptRequest,
            Fault::Corrupt { response: true, .. } => FaultKind::CorruptResponse,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Fault::ResetRequest { after }
            | Fault::ResetResponse { after }
            | Fault::Stall { after }
            | Fault::StallRequest { after } => write!(f, "{kind} after {after} B"),
            Fault::ResetAfterResponse => write!(f, "{kind}"),
            Fault::Status {
                code,
                retry_after: Some(secs),
            } => write!(f, "{kind} {code} (retry-after {secs})"),
            Fault::Status { code, .. } => write!(f, "{kind} {code}"),
            Fault::Delay(d) => write!(f, "{kind} {d:?}"),
            Fault::Corrupt { offset, .. } => write!(f, "{kind} at body byte {offset}"),
        }
    }
}

/// The kinds of [`Fault`], for weights and counters (corruption counted per direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// [`Fault::ResetRequest`].
    ResetRequest,
    /// [`Fault::ResetResponse`].
    ResetResponse,
    /// [`Fault::ResetAfterResponse`].
    ResetAfterResponse,
    /// [`Fault::Status`].
    Status,
    /// [`Fault::Delay`].
    Delay,
    /// [`Fault::Stall`].
    Stall,
    /// [`Fault::StallRequest`].
    StallRequest,
    /// [`Fault::Corrupt`] of a request body.
    CorruptRequest,
    /// [`Fault::Corrupt`] of a response body.
    CorruptResponse,
}

impl FaultKind {
    /// Every kind, in counter order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::ResetRequest,
        FaultKind::ResetResponse,
        FaultKind::ResetAfterResponse,
        FaultKind::Status,
        FaultKind::Delay,
        FaultKind::Stall,
        FaultKind::StallRequest,
        FaultKind::CorruptRequest,
        FaultKind::CorruptResponse,
    ];

    /// Its name in kebab case (`reset-request`, `status`, …), as [`FromStr`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ResetRequest => "reset-request",
            FaultKind::ResetResponse => "reset-response",
            FaultKind::ResetAfterResponse => "reset-after-response",
            FaultKind::Status => "status",
            FaultKind::Delay => "delay",
            FaultKind::Stall => "stall",
            FaultKind::StallRequest => "stall-request",
            FaultKind::CorruptRequest => "corrupt-request",
            FaultKind::CorruptResponse => "corrupt-response",
        }
    }

    /// Its position in [`ALL`](Self::ALL).
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`FaultKind`] from an unknown name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFaultKind(pub String);

impl fmt::Display for UnknownFaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault kind {:?} (known: ", self.0)?;
        for (i, kind) in FaultKind::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{kind}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownFaultKind {}

impl FromStr for FaultKind {
    type Err = UnknownFaultKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFaultKind(s.to_owned()))
    }
}

/// A snapshot of a fault proxy's counters ([`Proxy::stats`](super::Proxy::stats)); its
/// `Display` is a compact table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Request heads read (every request, faulted or not).
    pub requests: u64,
    /// Client connections proxied to the server.
    pub connections: u64,
    /// Connections accepted into the black hole, and requests it swallowed on connections
    /// already open.
    pub black_holed: u64,
    /// Client connections open now (proxied or black-holed).
    pub open: u64,
    /// Faults that took effect, per kind ([`FaultKind::ALL`] order).
    pub faults: [u64; 9],
}

impl FaultStats {
    /// Faults of `kind` that took effect.
    pub fn count(&self, kind: FaultKind) -> u64 {
        self.faults.get(kind.index()).copied().unwrap_or(0)
    }

    /// Faults of all kinds that took effect.
    pub fn total(&self) -> u64 {
        self.faults.iter().sum()
    }
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let share = if self.requests == 0 {
            0.0
        } else {
            100.0 * total as f64 / self.requests as f64
        };
        write!(
            f,
            "requests {}  faults {total} ({share:.1}%)  connections {} (open {}, black-holed {})",
            self.requests, self.connections, self.open, self.black_holed
        )?;
        for row in FaultKind::ALL.chunks(3) {
            f.write_str("\n")?;
            for kind in row {
                write!(f, "  {:<20} {:>6}", kind.name(), self.count(*kind))?;
            }
        }
        Ok(())
    }
}
