//! The allocator of a shared region's space (docs/ipc-protocol.md, "Shared memory").
//!
//! The sender of a shared region hands out runs of 64 KiB units, first fit, and gets them
//! back when the receiver releases them. It is plain bookkeeping (no memory is touched
//! here), so a peer that releases what it was never given is caught and reported, not
//! believed.
//!
//! ```
//! use driver_ipc::slots::Slots;
//! let mut s = Slots::new(1 << 20); // 16 units
//! let a = s.alloc(100 << 10).unwrap(); // two units
//! let b = s.alloc(64 << 10).unwrap();
//! assert_eq!((a, b), (0, 128 << 10));
//! s.release(a, 100 << 10).unwrap();
//! assert!(s.release(a, 100 << 10).is_err()); // twice
//! assert_eq!(s.alloc(1).unwrap(), 0);
//! ```

use std::collections::HashMap;

/// The allocation unit.
pub const UNIT: usize = 64 << 10;

/// The largest region this allocator manages: 128 units, one bit each.
pub const MAX_REGION: usize = 128 * UNIT;

/// Which units of a region are in use, and where each allocation starts.
#[derive(Debug)]
pub struct Slots {
    /// Bit `i`: unit `i` is in use.
    used: u128,
    /// Units in the region.
    units: u32,
    /// Allocation start (in units) to its length (in units).
    live: HashMap<u32, u32>,
}

impl Slots {
    /// An allocator for a region of `size` bytes (rounded down to whole units, at most
    /// [`MAX_REGION`]).
    pub fn new(size: usize) -> Self {
        Self {
            used: 0,
            units: (size.min(MAX_REGION) / UNIT) as u32,
            live: HashMap::new(),
        }
    }

    fn units_for(len: usize) -> Option<u32> {
        match len {
            0 => None,
            n => u32::try_from(n.div_ceil(UNIT)).ok(),
        }
    }

    fn mask(start: u32, n: u32) -> u128 {
        let run = if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        };
        run << start
    }

    /// Finds room for `len` bytes (first fit); returns its byte offset, or `None` when
    /// no run of free units is long enough (the caller then sends through the pipe).
    pub fn alloc(&mut self, len: usize) -> Option<u32> {
        let n = Self::units_for(len)?;
        if n > self.units {
            return None;
        }
        let mut start = 0;
        while start + n <= self.units {
            let m = Self::mask(start, n);
            if self.used & m == 0 {
                self.used |= m;
                self.live.insert(start, n);
                return Some(start * UNIT as u32);
            }
            // Skip past the highest used unit inside the run tried.
            let busy = self.used & m;
            start = 128 - busy.leading_zeros();
        }
        None
    }

    /// Gives back the allocation at `offset` of `len` bytes; an error (and no change) if
    /// that is not a live allocation.
    pub fn release(&mut self, offset: u32, len: u32) -> Result<(), String> {
        let bad = || format!("released {len} bytes at offset {offset}, which were not lent");
        if !(offset as usize).is_multiple_of(UNIT) {
            return Err(bad());
        }
        let start = offset / UNIT as u32;
        let n = Self::units_for(len as usize).ok_or_else(bad)?;
        match self.live.get(&start) {
            Some(&have) if have == n => {
                self.live.remove(&start);
                self.used &= !Self::mask(start, n);
                Ok(())
            }
            _ => Err(bad()),
        }
    }

    /// Units in use.
    pub fn in_use(&self) -> u32 {
        self.used.count_ones()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random allocations and releases against a byte-per-unit model: no two live
    /// allocations overlap, a free run is always found when the model has one, and
    /// everything released leaves the region empty.
    #[test]
    fn allocations_never_overlap() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut s = Slots::new(MAX_REGION);
        let mut model = [false; 128];
        let mut live: Vec<(u32, u32)> = Vec::new();
        for _ in 0..20_000 {
            if next() % 3 != 0 || live.is_empty() {
                let len = (next() % (1 << 20)) as usize + 1;
                let n = len.div_ceil(UNIT);
                let fits = (0..=128 - n).find(|&i| model[i..i + n].iter().all(|u| !u));
                match (s.alloc(len), fits) {
                    (Some(off), Some(first)) => {
                        let u = off as usize / UNIT;
                        assert_eq!(u, first, "first fit");
                        model[u..u + n].iter_mut().for_each(|b| *b = true);
                        live.push((off, len as u32));
                    }
                    (None, None) => {}
                    (got, want) => panic!("alloc({len}) = {got:?}, model says {want:?}"),
                }
            } else {
                let i = (next() as usize) % live.len();
                let (off, len) = live.swap_remove(i);
                s.release(off, len).unwrap();
                let u = off as usize / UNIT;
                model[u..u + (len as usize).div_ceil(UNIT)]
                    .iter_mut()
                    .for_each(|b| *b = false);
            }
            assert_eq!(s.in_use() as usize, model.iter().filter(|b| **b).count());
        }
        for (off, len) in live {
            s.release(off, len).unwrap();
        }
        assert_eq!(s.in_use(), 0);
    }

    #[test]
    fn bogus_releases_are_refused() {
        let mut s = Slots::new(8 * UNIT);
        let a = s.alloc(2 * UNIT).unwrap();
        assert!(s.release(a + 1, 2 * UNIT as u32).is_err(), "misaligned");
        assert!(s.release(a, UNIT as u32).is_err(), "wrong length");
        assert!(
            s.release(UNIT as u32, UNIT as u32).is_err(),
            "inside, not a start"
        );
        assert!(s.release(a, 0).is_err(), "empty");
        assert_eq!(s.in_use(), 2);
        s.release(a, 2 * UNIT as u32).unwrap();
        assert!(s.alloc(9 * UNIT).is_none(), "larger than the region");
        assert!(s.alloc(0).is_none());
    }
}
