//! Test data: fast deterministic pseudo-random bytes and random names.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// A random `u64`: std's per-process random SipHash keys, fed a counter.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// xorshift64* generator: cheap enough to produce GiBs of test data.
#[derive(Debug, Clone)]
pub struct DataGen(u64);

impl DataGen {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A generator seeded from the OS.
    pub fn random() -> Self {
        Self::new(random_u64())
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let tail = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&tail[..rest.len()]);
    }

    /// `n` fresh bytes.
    pub fn bytes(&mut self, n: usize) -> Bytes {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        Bytes::from(v)
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Bytes {
    DataGen::random().bytes(n)
}

/// A random lower-case alphanumeric name of `n` characters.
pub fn random_name(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut gen = DataGen::random();
    (0..n)
        .map(|_| CHARS[(gen.next_u64() % CHARS.len() as u64) as usize] as char)
        .collect()
}

/// A random absolute path of `depth` components of 8 characters.
pub fn random_path(depth: usize) -> String {
    let mut s = String::new();
    for _ in 0..depth.max(1) {
        s.push('/');
        s.push_str(&random_name(8));
    }
    s
}
