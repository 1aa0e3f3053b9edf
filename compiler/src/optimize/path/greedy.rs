//! opt_einsum's greedy heuristic and its randomised variant.
//!
//! The greedy run repeatedly contracts the pair of operands sharing a summed label
//! whose heuristic cost `size(result) - size(a) - size(b)` is least (ties go to the
//! pair with the smaller ids), after first multiplying out inputs with identical label
//! sets (Hadamard products), exactly as opt_einsum's `greedy` does; when no pair shares
//! a summed label, the two smallest operands are joined until one is left.
//!
//! The randomised variant perturbs that choice: each trial draws a cost modifier `a`
//! (scoring `size(result)/a - a*(size(a) + size(b))`) and a temperature, and adds
//! Gumbel noise of that temperature to each candidate's log-scaled score, which samples
//! pairs from a Boltzmann distribution over scores. The best of all trials is kept;
//! trials are seeded from the user's seed and the trial number, so runs repeat exactly.

use super::dp::Budget;
use super::problem::{contract_lists, mul, product, Found, Problem};
use super::rng::Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Hyperedges held by more operands than this only propose pairs between neighbours
/// in id order (a label shared by k operands would otherwise propose k^2 pairs).
const HYPER_CAP: usize = 32;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) costmod: f64,
    pub(crate) temperature: f64,
}

impl Params {
    pub(crate) const PLAIN: Params = Params {
        costmod: 1.0,
        temperature: 0.0,
    };
}

#[derive(Clone, Copy)]
struct Cand {
    score: f64,
    a: u32,
    b: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    /// Reversed, so that `BinaryHeap` pops the least score, then the least ids.
    fn cmp(&self, o: &Self) -> Ordering {
        o.score
            .total_cmp(&self.score)
            .then(o.a.cmp(&self.a))
            .then(o.b.cmp(&self.b))
    }
}

/// Monotone, sign-preserving log scale, finite at zero (approximate: it only shapes
/// the noise of randomised runs).
fn slog(x: f64) -> f64 {
    if x >= 0.0 {
        fast_ln(1.0 + x)
    } else {
        -fast_ln(1.0 - x)
    }
}

/// Natural logarithm to about 1e-4 absolute error for finite `x >= 1e-300`, from the
/// float's exponent and a short series in its mantissa; several times cheaper than
/// `ln`, which dominated randomised greedy runs.
fn fast_ln(x: f64) -> f64 {
    if !(x > 0.0 && x.is_finite()) {
        return x.ln();
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7FF) as i64 - 1023;
    // Mantissa m in [1, 2); write m = (1 + t) / (1 - t), so ln m = 2 atanh t.
    let m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let ln_m = 2.0 * t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 / 7.0)));
    exp as f64 * std::f64::consts::LN_2 + ln_m
}

/// A standard Gumbel sample with [`fast_ln`].
fn fast_gumbel(rng: &mut Rng) -> f64 {
    -fast_ln(-fast_ln(rng.uniform()))
}

/// Reusable buffers, so that thousands of random trials allocate little.
pub(crate) struct Greedy<'p> {
    p: &'p Problem,
    /// Labels that may propose pairs: summed, and not held by every input (opt_einsum
    /// treats the latter as batch labels, which saves an all-pairs scan).
    proposes: Vec<bool>,
    nodes: Vec<Vec<u32>>,
    size: Vec<f64>,
    alive: Vec<bool>,
    count: Vec<u32>,
    holders: Vec<Vec<u32>>,
    mark: Vec<u32>,
    heap: BinaryHeap<Cand>,
    /// Candidates pushed so far, over all runs (the unit of the work limits).
    work: u64,
}

impl<'p> Greedy<'p> {
    pub(crate) fn new(p: &'p Problem) -> Self {
        let n = p.n();
        let mut deg = vec![0usize; p.nlabels()];
        for inp in &p.inputs {
            for &l in inp {
                deg[l as usize] += 1;
            }
        }
        let proposes = (0..p.nlabels())
            .map(|l| !p.in_output[l] && deg[l] >= 2 && deg[l] < n)
            .collect();
        Greedy {
            p,
            proposes,
            nodes: Vec::new(),
            size: Vec::new(),
            alive: Vec::new(),
            count: Vec::new(),
            holders: Vec::new(),
            mark: Vec::new(),
            heap: BinaryHeap::new(),
            work: 0,
        }
    }

    fn reset(&mut self) {
        let p = self.p;
        let n = p.n();
        self.nodes.clear();
        self.nodes.extend(p.inputs.iter().cloned());
        self.size.clear();
        self.size.extend(
            p.inputs
                .iter()
                .map(|v| product(v.iter().map(|&l| p.sizes[l as usize]))),
        );
        self.alive.clear();
        self.alive.resize(n, true);
        self.count.clear();
        self.count.extend(p.in_output.iter().map(|&o| o as u32));
        self.holders.iter_mut().for_each(Vec::clear);
        self.holders.resize(p.nlabels(), Vec::new());
        for (t, inp) in p.inputs.iter().enumerate() {
            for &l in inp {
                self.count[l as usize] += 1;
                self.holders[l as usize].push(t as u32);
            }
        }
        self.mark.clear();
        self.mark.resize(2 * n, u32::MAX);
        self.heap.clear();
    }

    /// The size of the result of contracting `a` and `b`, without changing any state.
    fn result_size(&self, a: u32, b: u32) -> f64 {
        let (la, lb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        let (mut i, mut j, mut size) = (0, 0, 1.0);
        while i < la.len() || j < lb.len() {
            let (l, k) = if j >= lb.len() || (i < la.len() && la[i] < lb[j]) {
                i += 1;
                (la[i - 1], 1)
            } else if i >= la.len() || lb[j] < la[i] {
                j += 1;
                (lb[j - 1], 1)
            } else {
                i += 1;
                j += 1;
                (la[i - 1], 2)
            };
            if self.count[l as usize] > k {
                size = mul(size, self.p.sizes[l as usize]);
            }
        }
        size
    }

    fn push(&mut self, a: u32, b: u32, params: Params, rng: &mut Option<Rng>, limit: Option<f64>) {
        let (a, b) = (a.min(b), a.max(b));
        let s = self.result_size(a, b);
        if limit.is_some_and(|lim| s > lim) {
            return;
        }
        let (sa, sb) = (self.size[a as usize], self.size[b as usize]);
        let x = s / params.costmod - params.costmod * (sa + sb);
        // The plain run ranks by the raw heuristic (exactly opt_einsum's order); noisy
        // runs perturb it on a log scale, so the noise is relative to its magnitude.
        let score = match rng.as_mut() {
            Some(r) => slog(x) - params.temperature * fast_gumbel(r),
            None => x,
        };
        self.work += 1;
        self.heap.push(Cand { score, a, b });
    }

    fn contract(&mut self, a: u32, b: u32) -> (u32, f64, f64) {
        let (la, lb) = (
            std::mem::take(&mut self.nodes[a as usize]),
            std::mem::take(&mut self.nodes[b as usize]),
        );
        let (keep, step) = contract_lists(&la, &lb, &mut self.count, &self.p.sizes);
        let size = product(keep.iter().map(|&l| self.p.sizes[l as usize]));
        self.alive[a as usize] = false;
        self.alive[b as usize] = false;
        let k = self.nodes.len() as u32;
        for &l in &keep {
            self.holders[l as usize].push(k);
        }
        self.nodes.push(keep);
        self.size.push(size);
        self.alive.push(true);
        (k, step, size)
    }

    /// One greedy run. Gives up (returns `None`) once its cost reaches `abort_at`, or
    /// when `limit` leaves no way to finish.
    pub(crate) fn run(
        &mut self,
        params: Params,
        mut rng: Option<Rng>,
        limit: Option<f64>,
        abort_at: f64,
    ) -> Option<(Vec<(u32, u32)>, f64)> {
        self.reset();
        let p = self.p;
        let n = p.n();
        let mut ssa: Vec<(u32, u32)> = Vec::with_capacity(n.saturating_sub(1));
        let mut flops = 0.0;
        // An infinite bound means "no bound" (costs themselves may overflow to infinity).
        let over = |flops: f64| abort_at.is_finite() && flops >= abort_at;

        // Multiply out inputs with identical label sets first (opt_einsum does too).
        let mut first_with: std::collections::HashMap<&[u32], u32> =
            std::collections::HashMap::new();
        for t in 0..n as u32 {
            match first_with.get(p.inputs[t as usize].as_slice()).copied() {
                Some(prev) => {
                    let (k, step, size) = self.contract(prev, t);
                    if limit.is_some_and(|lim| size > lim) {
                        return None;
                    }
                    ssa.push((prev, t));
                    flops += step;
                    first_with.insert(p.inputs[t as usize].as_slice(), k);
                }
                None => {
                    first_with.insert(p.inputs[t as usize].as_slice(), t);
                }
            }
        }
        if over(flops) {
            return None;
        }

        // Initial candidates: pairs sharing a proposing label.
        for l in 0..p.nlabels() {
            if !self.proposes[l] {
                continue;
            }
            let hs: Vec<u32> = self.holders[l]
                .iter()
                .copied()
                .filter(|&h| self.alive[h as usize])
                .collect();
            let span = if hs.len() > HYPER_CAP { 2 } else { hs.len() };
            for i in 0..hs.len() {
                for j in i + 1..hs.len().min(i + 1 + span) {
                    self.push(hs[i], hs[j], params, &mut rng, limit);
                }
            }
        }

        while let Some(c) = self.heap.pop() {
            if !self.alive[c.a as usize] || !self.alive[c.b as usize] {
                continue;
            }
            let (k, step, _) = self.contract(c.a, c.b);
            ssa.push((c.a, c.b));
            flops += step;
            if over(flops) {
                return None;
            }
            // New candidates: the new operand with every live operand it shares a
            // proposing label with.
            let labels = self.nodes[k as usize].clone();
            for l in labels {
                if !self.proposes[l as usize] {
                    continue;
                }
                let alive = &self.alive;
                self.holders[l as usize].retain(|&h| alive[h as usize]);
                let hs = std::mem::take(&mut self.holders[l as usize]);
                let mut proposed = 0;
                for &m in &hs {
                    if m == k || self.mark[m as usize] == k {
                        continue;
                    }
                    if proposed >= HYPER_CAP {
                        break;
                    }
                    self.mark[m as usize] = k;
                    proposed += 1;
                    self.push(k, m, params, &mut rng, limit);
                }
                self.holders[l as usize] = hs;
            }
        }

        // Nothing left shares a summed label: join the two smallest until one is left.
        let mut rest: BinaryHeap<Cand> = (0..self.nodes.len() as u32)
            .filter(|&v| self.alive[v as usize])
            .map(|v| Cand {
                score: self.size[v as usize],
                a: v,
                b: v,
            })
            .collect();
        while rest.len() > 1 {
            let (Some(x), Some(y)) = (rest.pop(), rest.pop()) else {
                break;
            };
            let (a, b) = (x.a.min(y.a), x.a.max(y.a));
            let (k, step, size) = self.contract(a, b);
            if limit.is_some_and(|lim| size > lim) {
                return None;
            }
            ssa.push((a, b));
            flops += step;
            if over(flops) {
                return None;
            }
            rest.push(Cand {
                score: size,
                a: k,
                b: k,
            });
        }
        Some((ssa, flops))
    }
}

/// opt_einsum's greedy path.
pub(crate) fn greedy(p: &Problem, limit: Option<f64>) -> Option<(Vec<(u32, u32)>, f64)> {
    Greedy::new(p).run(Params::PLAIN, None, limit, f64::INFINITY)
}

/// The parameters of random trial `r` (trial 0 is the plain greedy run).
fn trial_params(rng: &mut Rng) -> Params {
    // Log-uniform cost modifier in [1/4, 4] and temperature in [1/256, 1].
    let costmod = (4f64.ln() * (2.0 * rng.uniform() - 1.0)).exp();
    let temperature = (256f64.ln() * (rng.uniform() - 1.0)).exp();
    Params {
        costmod,
        temperature,
    }
}

/// The best `keep` of the greedy runs numbered `trials` (run 0 is the plain greedy run;
/// run r > 0 is randomised with a generator seeded from `seed` and r), merged with the
/// paths in `known`; cheapest first, distinct in cost. Runs stop early once they have
/// pushed `budget.work` candidates in all (deterministic) or at the deadline (reported).
pub(crate) fn random_greedy(
    p: &Problem,
    trials: std::ops::Range<usize>,
    seed: u64,
    limit: Option<f64>,
    budget: Budget,
    known: Vec<Found>,
    keep: usize,
) -> (Vec<Found>, bool) {
    let keep = keep.max(1);
    let mut g = Greedy::new(p);
    let mut best: Vec<Found> = Vec::new();
    let offer = |best: &mut Vec<Found>, f: Found| {
        if !best.iter().any(|b| b.1 == f.1) {
            let at = best.partition_point(|b| b.1 < f.1);
            best.insert(at, f);
            best.truncate(keep);
        }
    };
    for k in known {
        offer(&mut best, k);
    }
    let mut timed_out = false;
    for r in trials {
        // Without any path yet, one run always happens (greedy is the fallback).
        if !best.is_empty() && g.work >= budget.work {
            break;
        }
        if !best.is_empty() && budget.expired() {
            timed_out = true;
            break;
        }
        // A run only matters if it beats the worst kept one.
        let bound = if best.len() < keep {
            f64::INFINITY
        } else {
            best.last().map_or(f64::INFINITY, |b| b.1)
        };
        let found = if r == 0 {
            g.run(Params::PLAIN, None, limit, bound)
        } else {
            let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ r as u64);
            let params = trial_params(&mut rng);
            g.run(params, Some(rng), limit, bound)
        };
        if let Some(f) = found {
            if f.1 < bound || best.len() < keep {
                offer(&mut best, f);
            }
        }
    }
    (best, timed_out)
}
