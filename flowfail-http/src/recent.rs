//! A bounded memory of the keys already delivered: [`Recent`].

use std::collections::{HashMap, VecDeque};

/// How many keys [`crate::PagerDuty`] and [`crate::Webhook`] each remember: far more than the
/// pages and notifications of the incidents of a week (a few per incident), and few enough
/// that the memory stays flat for the life of the process.
pub(crate) const CAPACITY: usize = 4096;

/// At most `cap` keys, each with a value; when full, the key used least recently is forgotten
/// first. Finding a key ([`Recent::get`]) counts as a use, so a key still being checked stays.
#[derive(Debug)]
pub(crate) struct Recent<V> {
    cap: usize,
    /// Each key with the tick of its last use and its value.
    entries: HashMap<String, (u64, V)>,
    /// Keys in the order of their uses, with the tick of each use. A key used again leaves an
    /// older entry behind, skipped when reached; compacted when twice `cap` long.
    order: VecDeque<(u64, String)>,
    tick: u64,
}

impl<V> Recent<V> {
    /// An empty memory of at most `cap` keys (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        Recent {
            cap: cap.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            tick: 0,
        }
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key`, if remembered; the key is marked used.
    pub(crate) fn get(&mut self, key: &str) -> Option<&V> {
        if self.entries.contains_key(key) {
            let t = self.next_tick(key);
            if let Some(e) = self.entries.get_mut(key) {
                e.0 = t;
            }
        }
        self.entries.get(key).map(|(_, v)| v)
    }

    /// Remembers `key` with `value` (replacing any value it had), as its most recent use, and
    /// forgets the least recently used keys beyond the capacity.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        let t = self.next_tick(&key);
        self.entries.insert(key, (t, value));
        while self.entries.len() > self.cap {
            let Some((t, k)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&k).is_some_and(|e| e.0 == t) {
                self.entries.remove(&k);
            }
        }
    }

    /// A new tick for a use of `key`, recorded in the order; stale entries are dropped when
    /// the order grows past twice the capacity, so it stays within that.
    fn next_tick(&mut self, key: &str) -> u64 {
        self.tick += 1;
        self.order.push_back((self.tick, key.to_owned()));
        if self.order.len() > 2 * self.cap {
            let (entries, now) = (&self.entries, self.tick);
            self.order
                .retain(|(t, k)| *t == now || entries.get(k).is_some_and(|e| e.0 == *t));
        }
        self.tick
    }

    #[cfg(test)]
    fn order_len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_key_is_forgotten_first() {
        let mut r = Recent::new(3);
        for k in ["a", "b", "c"] {
            r.insert(k.to_owned(), k.len());
        }
        assert!(r.get("a").is_some(), "a used: b is now the oldest");
        r.insert("d".to_owned(), 1);
        assert_eq!(r.len(), 3);
        assert!(r.get("b").is_none());
        assert!(r.get("a").is_some() && r.get("c").is_some() && r.get("d").is_some());
    }

    #[test]
    fn a_key_inserted_again_takes_the_new_value_and_counts_once() {
        let mut r = Recent::new(2);
        r.insert("a".to_owned(), 1);
        r.insert("a".to_owned(), 2);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("a"), Some(&2));
        r.insert("b".to_owned(), 3);
        r.insert("c".to_owned(), 4);
        assert_eq!(r.len(), 2);
        assert!(r.get("a").is_none() && r.get("b").is_some() && r.get("c").is_some());
    }

    #[test]
    fn memory_stays_bounded_however_keys_are_used() {
        let mut r = Recent::new(8);
        for i in 0..10_000 {
            r.insert(format!("k{i}"), i);
            // The same few keys found over and over: each find leaves a stale entry behind.
            for _ in 0..3 {
                r.get("k0");
                r.get(&format!("k{i}"));
            }
            assert!(r.len() <= 8);
            assert!(
                r.order_len() <= 2 * 8 + 1,
                "order grew to {}",
                r.order_len()
            );
        }
        assert_eq!(r.len(), 8);
        assert!(r.get("k0").is_some(), "used all along: never forgotten");
        assert!(r.get("k1").is_none());
    }
}
