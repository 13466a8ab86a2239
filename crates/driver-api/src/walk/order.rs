//! From an object store's listing order to the walk's.
//!
//! Object stores list keys in byte order; a walk emits paths component by component (a directory's
//! contents right after it). The two differ only where a name continues with a byte below
//! `/` (`-` or `.`) where another path has a `/`: S3 lists `a.b` before `a/x`, the walk
//! wants `a/x` first (`a` sorts before `a.b`). [`Reorder`] holds back just the keys that a
//! later key may still overtake (`a.b` until the listing has passed every `a/…` key) and
//! releases everything else at once, so memory stays small on real trees.

use std::collections::BTreeMap;

/// The sort key of the walk order: `/` maps below every other byte.
fn walk_key(key: &str) -> Vec<u8> {
    key.bytes().map(|b| if b == b'/' { 0 } else { b }).collect()
}

/// The byte-order key past which nothing can overtake `key`, if something may: for the
/// first byte below `/` at position `i`, keys starting `key[..i] + "/"` sort before `key`
/// in walk order but after it in byte order; the listing is past all of them once it
/// reaches `key[..i] + "0"` (`0` is the byte after `/`).
fn release_bound(key: &str) -> Option<Vec<u8>> {
    let i = key.bytes().position(|b| b < b'/')?;
    let mut bound = key.as_bytes()[..i].to_vec();
    bound.push(b'0');
    Some(bound)
}

/// Reorders a byte-ordered stream of keys into walk order (see the module docs).
#[derive(Debug)]
pub struct Reorder<T> {
    pending: BTreeMap<Vec<u8>, (Option<Vec<u8>>, T)>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// Adds the next key of the listing (keys must arrive in byte order) and returns the
    /// items now known to come next in walk order.
    pub fn push(&mut self, key: &str, item: T) -> Vec<T> {
        self.pending
            .insert(walk_key(key), (release_bound(key), item));
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            // Every later key is byte-greater than `key`: an entry is safe once `key` is
            // at or past its bound.
            let safe = match &entry.get().0 {
                None => true,
                Some(bound) => bound.as_slice() <= key.as_bytes(),
            };
            if !safe {
                break;
            }
            ready.push(entry.remove().1);
        }
        ready
    }

    /// The listing ended: everything left, in walk order.
    pub fn finish(self) -> impl Iterator<Item = T> {
        self.pending.into_values().map(|(_, item)| item)
    }

    /// Keys held back.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(keys: &[&str]) -> Vec<String> {
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort(); // the stores' byte order
        let mut r = Reorder::default();
        let mut out = Vec::new();
        for k in sorted {
            out.extend(r.push(k, k.to_string()));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn directories_before_dotted_siblings() {
        assert_eq!(
            run(&["a.b", "a/x", "a-c", "a/y/z", "b"]),
            ["a/x", "a/y/z", "a-c", "a.b", "b"]
        );
    }

    #[test]
    fn matches_component_order_on_random_trees() {
        // Deterministic pseudo-random trees over an alphabet that provokes every case.
        let alphabet = [b'a', b'b', b'-', b'.', b'0'];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let mut keys = std::collections::BTreeSet::new();
            for _ in 0..(next() % 60 + 1) {
                let depth = next() % 3 + 1;
                let comps: Vec<String> = (0..depth)
                    .map(|_| {
                        let len = next() % 3 + 1;
                        (0..len)
                            .map(|_| alphabet[(next() % 5) as usize] as char)
                            .collect()
                    })
                    .collect();
                keys.insert(comps.join("/"));
            }
            // A file cannot also be a directory.
            let keys: Vec<String> = keys
                .iter()
                .filter(|k| !keys.iter().any(|o| o.starts_with(&format!("{k}/"))))
                .cloned()
                .collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut expected = keys.clone();
            expected.sort_by(|a, b| crate::path::cmp_paths(a, b));
            assert_eq!(run(&refs), expected, "keys {keys:?}");
        }
    }

    #[test]
    fn holds_back_only_what_can_be_overtaken() {
        let mut r = Reorder::default();
        assert!(r.push("docker-backup.tar", 1).is_empty());
        // Everything under docker/ comes first and is released immediately.
        assert_eq!(r.push("docker/a", 2), [2]);
        assert_eq!(r.push("docker/b", 3), [3]);
        assert_eq!(r.held(), 1);
        assert_eq!(r.push("e", 4), [1, 4]);
        assert_eq!(r.held(), 0);
    }
}
