//! Memoisation of path searches, keyed by a canonical form of the problem.
//!
//! The canonical form orders the inputs and renumbers the labels using only
//! name-independent facts (label sizes, how many inputs hold each label, output
//! membership), refined twice by first appearance. Two networks that differ only in
//! label names or input order usually reach the same form; when ties defeat that, they
//! merely miss each other in the cache. Searches always run on the canonical form, so
//! a result depends only on the form, never on what the cache held before.

use super::problem::{Problem, Solution};
use super::Method;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Returns `(perm, canonical)`: canonical input `c` is original input `perm[c]`.
pub(crate) fn canonicalize(p: &Problem) -> (Vec<usize>, Problem) {
    let n = p.n();
    let nl = p.nlabels();
    let mut deg = vec![0u32; nl];
    for inp in &p.inputs {
        for &l in inp {
            deg[l as usize] += 1;
        }
    }
    let lsig = |l: u32| {
        (
            p.sizes[l as usize].to_bits(),
            deg[l as usize],
            p.in_output[l as usize],
        )
    };
    // Input order from label signatures alone.
    let mut order: Vec<usize> = (0..n).collect();
    let sigs: Vec<Vec<(u64, u32, bool)>> = p
        .inputs
        .iter()
        .map(|inp| {
            let mut s: Vec<_> = inp.iter().map(|&l| lsig(l)).collect();
            s.sort_unstable();
            s
        })
        .collect();
    order.sort_by(|&a, &b| sigs[a].cmp(&sigs[b]).then(a.cmp(&b)));
    // The label rank used to order labels within an input; starts as the old id.
    let mut rank: Vec<u32> = (0..nl as u32).collect();
    for _round in 0..3 {
        // Renumber labels by first appearance along `order`.
        let mut new_id = vec![u32::MAX; nl];
        let mut next = 0u32;
        for &t in &order {
            let mut ls = p.inputs[t].clone();
            ls.sort_by_key(|&l| (lsig(l), rank[l as usize]));
            for l in ls {
                if new_id[l as usize] == u32::MAX {
                    new_id[l as usize] = next;
                    next += 1;
                }
            }
        }
        let relabelled: Vec<Vec<u32>> = p
            .inputs
            .iter()
            .map(|inp| {
                let mut v: Vec<u32> = inp.iter().map(|&l| new_id[l as usize]).collect();
                v.sort_unstable();
                v
            })
            .collect();
        let pos: Vec<usize> = {
            let mut pos = vec![0; n];
            for (i, &t) in order.iter().enumerate() {
                pos[t] = i;
            }
            pos
        };
        order.sort_by(|&a, &b| relabelled[a].cmp(&relabelled[b]).then(pos[a].cmp(&pos[b])));
        rank = new_id;
    }
    // Final numbering by first appearance in the final order.
    let mut new_id = vec![u32::MAX; nl];
    let mut next = 0u32;
    for &t in &order {
        let mut olds = p.inputs[t].clone();
        olds.sort_by_key(|&l| rank[l as usize]);
        for l in olds {
            if new_id[l as usize] == u32::MAX {
                new_id[l as usize] = next;
                next += 1;
            }
        }
    }
    // Labels that occur in no input (none after validation) keep a number anyway.
    for id in new_id.iter_mut() {
        if *id == u32::MAX {
            *id = next;
            next += 1;
        }
    }
    let mut sizes = vec![1.0; nl];
    let mut in_output = vec![false; nl];
    for l in 0..nl {
        sizes[new_id[l] as usize] = p.sizes[l];
        in_output[new_id[l] as usize] = p.in_output[l];
    }
    let map = |v: &[u32]| -> Vec<u32> {
        let mut m: Vec<u32> = v.iter().map(|&l| new_id[l as usize]).collect();
        m.sort_unstable();
        m
    };
    let canon = Problem {
        inputs: order.iter().map(|&t| map(&p.inputs[t])).collect(),
        output: map(&p.output),
        sizes,
        in_output,
    };
    (order, canon)
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    inputs: Vec<Vec<u32>>,
    output: Vec<u32>,
    sizes: Vec<u64>,
    method: Method,
    budget: Duration,
    limit: Option<u64>,
}

impl Key {
    fn new(p: &Problem, method: Method, budget: Duration, limit: Option<f64>) -> Key {
        Key {
            inputs: p.inputs.clone(),
            output: p.output.clone(),
            sizes: p.sizes.iter().map(|s| s.to_bits()).collect(),
            method,
            budget,
            limit: limit.map(f64::to_bits),
        }
    }
}

impl Key {
    /// Rough size in words, for the cache's memory bound.
    fn weight(&self, sol: &Solution) -> usize {
        let labels: usize = self.inputs.iter().map(|v| v.len() + 3).sum();
        16 + labels + self.output.len() + 2 * self.sizes.len() + 2 * sol.ssa.len()
    }
}

struct Inner {
    /// Keys are shared with `order`, so each is stored once.
    map: HashMap<Arc<Key>, Solution>,
    /// Insertion order with weights, for evicting the oldest entries when full.
    order: VecDeque<(Arc<Key>, usize)>,
    weight: usize,
    hits: u64,
    misses: u64,
}

/// Most words all entries of one cache may hold (about 16-32 MB); a single result
/// heavier than an eighth of this is not cached.
const MAX_WEIGHT: usize = 1 << 22;

/// A bounded memo of path searches (see the module docs of [`crate::optimize::path`]),
/// limited both in entries and in total size. Safe to share between threads.
pub struct PathCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

/// Counters of a [`PathCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

impl PathCache {
    /// A cache holding at most `capacity` results (the oldest is evicted first), and
    /// at most some tens of megabytes.
    pub fn new(capacity: usize) -> PathCache {
        PathCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                weight: 0,
                hits: 0,
                misses: 0,
            }),
            capacity,
        }
    }

    /// The process-wide cache used by [`super::optimize_path`] (4096 entries).
    pub fn global() -> &'static PathCache {
        static GLOBAL: OnceLock<PathCache> = OnceLock::new();
        GLOBAL.get_or_init(|| PathCache::new(4096))
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            entries: g.map.len(),
            hits: g.hits,
            misses: g.misses,
        }
    }

    pub fn clear(&self) {
        let mut g = self.lock();
        g.map.clear();
        g.order.clear();
        g.weight = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent
        // (every update is a single insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(
        &self,
        p: &Problem,
        method: Method,
        budget: Duration,
        limit: Option<f64>,
    ) -> Option<Solution> {
        let key = Key::new(p, method, budget, limit);
        let mut g = self.lock();
        let found = g.map.get(&key).cloned();
        if found.is_some() {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        found
    }

    pub(crate) fn insert(
        &self,
        p: &Problem,
        method: Method,
        budget: Duration,
        limit: Option<f64>,
        sol: &Solution,
    ) {
        if self.capacity == 0 {
            return;
        }
        let key = Key::new(p, method, budget, limit);
        let weight = key.weight(sol);
        if weight > MAX_WEIGHT / 8 {
            return;
        }
        let mut g = self.lock();
        if g.map.contains_key(&key) {
            return;
        }
        while g.map.len() >= self.capacity || g.weight + weight > MAX_WEIGHT {
            match g.order.pop_front() {
                Some((old, w)) => {
                    g.map.remove(&old);
                    g.weight -= w;
                }
                None => break,
            }
        }
        let key = Arc::new(key);
        g.order.push_back((Arc::clone(&key), weight));
        g.weight += weight;
        g.map.insert(key, sol.clone());
    }
}
