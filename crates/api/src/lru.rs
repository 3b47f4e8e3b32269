//! A small least-recently-used map keyed by byte strings: a hash map into a slab
//! of nodes linked in recency order. Lookups, hits and inserts are O(1) and
//! allocate nothing beyond the key of a new entry. Keys are hashed with
//! foldhash, seeded at random per process (keys come from clients: a fixed
//! hash would let them pick colliding strings).

use std::collections::HashMap;
use std::sync::Arc;

const NIL: usize = usize::MAX;

struct Node<V> {
    key: Arc<[u8]>,
    value: V,
    prev: usize,
    next: usize,
}

pub struct Lru<V> {
    map: HashMap<Arc<[u8]>, usize, foldhash::fast::RandomState>,
    nodes: Vec<Node<V>>,
    /// most recently used
    head: usize,
    /// least recently used: the next to go
    tail: usize,
    capacity: usize,
}

impl<V: Clone> Lru<V> {
    /// A cache of at most `capacity` entries (0: holds nothing). Memory is
    /// taken as entries arrive, not up front.
    pub fn new(capacity: usize) -> Self {
        Lru {
            map: HashMap::default(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The most entries it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The value for `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &[u8]) -> Option<V> {
        let i = *self.map.get(key)?;
        self.touch(i);
        Some(self.nodes[i].value.clone())
    }

    /// Inserts or replaces `key`, evicting the least recently used entry
    /// when full.
    pub fn insert(&mut self, key: &[u8], value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some(&i) = self.map.get(key) {
            self.nodes[i].value = value;
            self.touch(i);
            return;
        }
        let key: Arc<[u8]> = Arc::from(key);
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push(Node {
                key: key.clone(),
                value,
                prev: NIL,
                next: NIL,
            });
            self.nodes.len() - 1
        } else {
            let i = self.tail;
            self.unlink(i);
            let old = std::mem::replace(
                &mut self.nodes[i],
                Node {
                    key: key.clone(),
                    value,
                    prev: NIL,
                    next: NIL,
                },
            );
            self.map.remove(&old.key);
            i
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    fn touch(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.nodes[i].prev = NIL;
        self.nodes[i].next = NIL;
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = Lru::new(2);
        c.insert(b"a", 1);
        c.insert(b"b", 2);
        assert_eq!(c.get(b"a"), Some(1)); // a is now newer than b
        c.insert(b"c", 3); // evicts b
        assert_eq!(c.get(b"b"), None);
        assert_eq!(c.get(b"a"), Some(1));
        assert_eq!(c.get(b"c"), Some(3));
        c.insert(b"a", 10); // replace, no eviction
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b"a"), Some(10));
        assert_eq!(c.get(b"c"), Some(3));
        c.insert(b"d", 4); // a is the oldest now
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.get(b"c"), Some(3));
        assert_eq!(c.get(b"d"), Some(4));
    }

    #[test]
    fn capacity_one_and_zero() {
        let mut c = Lru::new(1);
        c.insert(b"a", 1);
        c.insert(b"b", 2);
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.get(b"b"), Some(2));
        let mut z = Lru::new(0);
        z.insert(b"a", 1);
        assert_eq!(z.get(b"a"), None);
        assert_eq!(z.len(), 0);
    }

    #[test]
    fn matches_a_naive_model() {
        // a deterministic pseudo-random workload against a Vec-based model
        let cap = 7;
        let mut c = Lru::new(cap);
        let mut model: Vec<(String, u32)> = Vec::new(); // front = newest
        let mut x: u32 = 12345;
        for step in 0..5000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let k = format!("k{}", (x >> 16) % 13);
            if (x >> 8).is_multiple_of(3) {
                c.insert(k.as_bytes(), step);
                if let Some(p) = model.iter().position(|(mk, _)| *mk == k) {
                    model.remove(p);
                }
                model.insert(0, (k, step));
                model.truncate(cap);
            } else {
                let got = c.get(k.as_bytes());
                let want = model.iter().position(|(mk, _)| *mk == k).map(|p| {
                    let e = model.remove(p);
                    let v = e.1;
                    model.insert(0, e);
                    v
                });
                assert_eq!(got, want, "step {step} key {k}");
            }
            assert_eq!(c.len(), model.len());
        }
    }
}
