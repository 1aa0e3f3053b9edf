//! The search's view of a network: labels merged and renumbered compactly, plus the
//! helpers every algorithm shares (replaying a path, turning SSA paths into opt_einsum's
//! linear format, the bitset form used by the exact searches).

use super::bits::Bits;
use super::{Label, Network};
use std::collections::{HashMap, HashSet};

/// A network after validation. Labels that occur in exactly the same inputs (and
/// equally in or out of the output) always travel together, so each such group is one
/// compact label whose size is the product of the group's sizes; this changes no cost
/// and makes every label set smaller.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Problem {
    /// Each input's distinct compact labels, sorted.
    pub(crate) inputs: Vec<Vec<u32>>,
    /// Output compact labels, sorted.
    pub(crate) output: Vec<u32>,
    pub(crate) sizes: Vec<f64>,
    pub(crate) in_output: Vec<bool>,
}

/// `a * b` where a zero factor wins over an infinite one: a zero-sized label makes a
/// tensor empty however large its other labels (and keeps costs free of NaN).
#[inline]
pub(crate) fn mul(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        a * b
    }
}

/// Product of sizes under [`mul`].
pub(crate) fn product(sizes: impl IntoIterator<Item = f64>) -> f64 {
    sizes.into_iter().fold(1.0, mul)
}

/// A path in SSA form: inputs are `0..n`, the k-th step creates `n + k`.
pub(crate) type Ssa = Vec<(u32, u32)>;

/// A path with its cost.
pub(crate) type Found = (Ssa, f64);

/// A search result in SSA form: inputs are `0..n`, the k-th step creates `n + k`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Solution {
    pub(crate) ssa: Ssa,
    pub(crate) method: &'static str,
    pub(crate) optimal: bool,
    /// True when the wall-clock budget stopped a search early (such results are not
    /// reproducible, so they are not cached).
    pub(crate) timed_out: bool,
}

impl Problem {
    pub(crate) fn n(&self) -> usize {
        self.inputs.len()
    }

    pub(crate) fn nlabels(&self) -> usize {
        self.sizes.len()
    }

    /// Merges labels by where they occur. The network must already be validated.
    pub(crate) fn from_network(net: &Network) -> Problem {
        let inputs: Vec<&[Label]> = net.inputs.iter().map(|v| v.as_slice()).collect();
        Self::build(&inputs, &net.output, |l| {
            net.sizes.get(l as usize).map_or(1.0, |&s| s as f64)
        })
    }

    /// Builds a problem from label lists over some label space with `f64` sizes (the
    /// sub-problems of subtree reconfiguration), merging labels as above.
    pub(crate) fn from_parts(inputs: &[&[u32]], output: &[u32], sizes: &[f64]) -> Problem {
        Self::build(inputs, output, |l| {
            sizes.get(l as usize).copied().unwrap_or(1.0)
        })
    }

    fn build(inputs: &[&[u32]], output: &[u32], size_of: impl Fn(u32) -> f64) -> Problem {
        let distinct: Vec<Vec<u32>> = inputs
            .iter()
            .map(|inp| {
                let mut v = inp.to_vec();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        // Where each original label occurs: the inputs holding it, in order.
        let mut occurs: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut first_seen: Vec<u32> = Vec::new();
        for (t, inp) in distinct.iter().enumerate() {
            for &l in inp {
                let e = occurs.entry(l).or_default();
                if e.is_empty() {
                    first_seen.push(l);
                }
                e.push(t as u32);
            }
        }
        let out_set: HashSet<u32> = output.iter().copied().collect();
        // One compact label per distinct (occurrences, in output) signature, numbered
        // in order of first appearance so that the numbering is deterministic.
        let mut group_of_sig: HashMap<(&[u32], bool), u32> = HashMap::new();
        let mut compact_of: HashMap<u32, u32> = HashMap::new();
        let mut sizes: Vec<f64> = Vec::new();
        let mut in_output: Vec<bool> = Vec::new();
        for &l in &first_seen {
            let occ: &[u32] = occurs.get(&l).map_or(&[], |v| v.as_slice());
            let out = out_set.contains(&l);
            let id = *group_of_sig.entry((occ, out)).or_insert_with(|| {
                sizes.push(1.0);
                in_output.push(out);
                (sizes.len() - 1) as u32
            });
            sizes[id as usize] = mul(sizes[id as usize], size_of(l));
            compact_of.insert(l, id);
        }
        let compact = |v: &[u32]| -> Vec<u32> {
            let mut c: Vec<u32> = v
                .iter()
                .filter_map(|l| compact_of.get(l).copied())
                .collect();
            c.sort_unstable();
            c.dedup();
            c
        };
        let inputs = distinct.iter().map(|v| compact(v)).collect();
        let output = compact(output);
        Problem {
            inputs,
            output,
            sizes,
            in_output,
        }
    }

    /// Replays an SSA path; returns (flops, largest result) or `None` when the path is
    /// malformed or breaks `limit`.
    pub(crate) fn ssa_cost(&self, ssa: &[(u32, u32)], limit: Option<f64>) -> Option<(f64, f64)> {
        let n = self.n();
        if n == 0 {
            return if ssa.is_empty() {
                Some((0.0, 0.0))
            } else {
                None
            };
        }
        if ssa.len() + 1 != n {
            return None;
        }
        let mut count: Vec<u32> = vec![0; self.nlabels()];
        for inp in &self.inputs {
            for &l in inp {
                count[l as usize] += 1;
            }
        }
        for &l in &self.output {
            count[l as usize] += 1;
        }
        let mut nodes: Vec<Option<Vec<u32>>> = self.inputs.iter().cloned().map(Some).collect();
        let (mut flops, mut largest) = (0.0, 0.0f64);
        for &(a, b) in ssa {
            let (a, b) = (a as usize, b as usize);
            if a == b || a >= nodes.len() || b >= nodes.len() {
                return None;
            }
            let la = nodes[a].take()?;
            let lb = nodes[b].take()?;
            let (keep, step) = contract_lists(&la, &lb, &mut count, &self.sizes);
            let size = product(keep.iter().map(|&l| self.sizes[l as usize]));
            if let Some(lim) = limit {
                if size > lim {
                    return None;
                }
            }
            flops += step;
            largest = largest.max(size);
            nodes.push(Some(keep));
        }
        Some((flops, largest))
    }
}

/// Contracts two sorted label lists, updating the live occurrence counts (inputs and
/// intermediates alive, plus one for the output); returns the kept labels and the
/// step's flops under the documented convention.
pub(crate) fn contract_lists(
    a: &[u32],
    b: &[u32],
    count: &mut [u32],
    sizes: &[f64],
) -> (Vec<u32>, f64) {
    let mut keep = Vec::with_capacity(a.len() + b.len());
    let mut all = 1.0;
    let mut summed = false;
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let (l, both) = if j >= b.len() || (i < a.len() && a[i] < b[j]) {
            i += 1;
            (a[i - 1], false)
        } else if i >= a.len() || b[j] < a[i] {
            j += 1;
            (b[j - 1], false)
        } else {
            i += 1;
            j += 1;
            (a[i - 1], true)
        };
        all = mul(all, sizes[l as usize]);
        let c = &mut count[l as usize];
        *c = c.saturating_sub(if both { 2 } else { 1 });
        if *c > 0 {
            keep.push(l);
            *c += 1;
        } else {
            summed = true;
        }
    }
    (keep, if summed { 2.0 * all } else { all })
}

/// Converts an SSA path to opt_einsum's linear format: positions in the current
/// operand list, which keeps the surviving ids in increasing order (new results are
/// appended and are larger than every live id). A Fenwick tree gives each position in
/// O(log n), so that huge networks convert quickly.
pub(crate) fn ssa_to_linear(ssa: &[(u32, u32)], n: usize) -> Vec<(usize, usize)> {
    let total = n + ssa.len();
    let mut fen = vec![0i64; total + 1];
    let add = |fen: &mut Vec<i64>, i: usize, d: i64| {
        let mut k = i + 1;
        while k < fen.len() {
            fen[k] += d;
            k += k & k.wrapping_neg();
        }
    };
    let prefix = |fen: &Vec<i64>, i: usize| -> i64 {
        // Number of live ids strictly below `i`.
        let mut k = i;
        let mut s = 0;
        while k > 0 {
            s += fen[k];
            k -= k & k.wrapping_neg();
        }
        s
    };
    for i in 0..n {
        add(&mut fen, i, 1);
    }
    let mut out = Vec::with_capacity(ssa.len());
    for (k, &(a, b)) in ssa.iter().enumerate() {
        let pa = prefix(&fen, a as usize) as usize;
        let pb = prefix(&fen, b as usize) as usize;
        out.push((pa.min(pb), pa.max(pb)));
        add(&mut fen, a as usize, -1);
        add(&mut fen, b as usize, -1);
        add(&mut fen, n + k, 1);
    }
    out
}

/// The exact searches' view: label sets as bitsets, tensor sets as `u128`.
pub(crate) struct BitProblem<const W: usize> {
    pub(crate) n: usize,
    pub(crate) labels: Vec<Bits<W>>,
    pub(crate) out: Bits<W>,
    /// Sizes padded to `64 * W` with ones.
    pub(crate) sizes: Vec<f64>,
    /// For each label, the tensors holding it.
    pub(crate) inc: Vec<u128>,
    /// For each tensor, the tensors it shares a summed (non-output) label with.
    pub(crate) adj: Vec<u128>,
}

impl<const W: usize> BitProblem<W> {
    /// Needs `p.n() <= 128` and `p.nlabels() <= 64 * W`.
    pub(crate) fn new(p: &Problem) -> Self {
        let n = p.n();
        let mut sizes = p.sizes.clone();
        sizes.resize(64 * W, 1.0);
        let labels: Vec<Bits<W>> = p.inputs.iter().map(|v| Bits::from_labels(v)).collect();
        let out = Bits::from_labels(&p.output);
        let mut inc = vec![0u128; 64 * W];
        for (t, inp) in p.inputs.iter().enumerate() {
            for &l in inp {
                inc[l as usize] |= 1u128 << t;
            }
        }
        let mut adj = vec![0u128; n];
        for (l, &m) in inc.iter().enumerate() {
            if out.contains(l) || m.count_ones() < 2 {
                continue;
            }
            for t in super::bits::set_ones(m) {
                adj[t] |= m & !(1u128 << t);
            }
        }
        BitProblem {
            n,
            labels,
            out,
            sizes,
            inc,
            adj,
        }
    }

    /// Contracts the operands with label sets `a` and `b` that together cover the
    /// tensors `s`; returns the result's labels and the step's flops.
    #[inline]
    pub(crate) fn step(&self, s: u128, a: &Bits<W>, b: &Bits<W>) -> (Bits<W>, f64) {
        let u = a.or(b);
        let mut legs = u;
        let mut summed = false;
        for l in u.and_not(&self.out).ones() {
            if self.inc[l] & !s == 0 {
                legs.0[l / 64] &= !(1u64 << (l % 64));
                summed = true;
            }
        }
        let all = u.size(&self.sizes);
        (legs, if summed { 2.0 * all } else { all })
    }

    /// The labels of the result of contracting all of `s` (labels used outside `s` or
    /// in the output), for `s` with at least two tensors.
    pub(crate) fn legs_of(&self, s: u128) -> Bits<W> {
        let mut u = Bits::EMPTY;
        for t in super::bits::set_ones(s) {
            u = u.or(&self.labels[t]);
        }
        let mut legs = u;
        for l in u.and_not(&self.out).ones() {
            if self.inc[l] & !s == 0 {
                legs.0[l / 64] &= !(1u64 << (l % 64));
            }
        }
        legs
    }
}
