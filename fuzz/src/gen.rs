//! Random well-formed programs: contractions, elementwise maps, `max=`/`min=`
//! reductions, selects on index comparisons, inline reductions and grouped indices,
//! over a few dims. Names and ranks are right by construction, so most of them check
//! and reach every backend.

use crate::rng::Rng;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The range of an index or the size of an axis.
#[derive(Clone, Debug, PartialEq)]
enum Range {
    Dim(&'static str),
    Lit(u64),
    /// A product axis `n * m`, read through a group `(i, p)`.
    Prod(&'static str, &'static str),
}

impl Range {
    fn text(&self) -> String {
        match self {
            Range::Dim(d) => d.to_string(),
            Range::Lit(v) => v.to_string(),
            Range::Prod(a, b) => format!("{a} * {b}"),
        }
    }
}

struct Tensor {
    name: String,
    axes: Vec<Range>,
}

const DIMS: &[&str] = &["n", "m", "d"];

fn index_names(r: &Range) -> &'static [&'static str] {
    match r {
        Range::Dim("n") => &["i", "j", "k"],
        Range::Dim("m") => &["p", "q", "r"],
        Range::Dim(_) => &["a", "b", "c"],
        Range::Lit(2) => &["u", "v"],
        Range::Lit(_) => &["w", "z"],
        Range::Prod(..) => &["g"],
    }
}

/// One statement being built: its indices and their ranges.
struct Scope<'a> {
    tensors: &'a [Tensor],
    ranges: BTreeMap<String, Range>,
    /// Indices that some access reads (so the checker can infer their ranges).
    bound: std::collections::BTreeSet<String>,
    /// Indices of inline reductions: never used again outside them.
    retired: std::collections::BTreeSet<String>,
    rng: &'a mut Rng,
}

impl Scope<'_> {
    /// An index of range `r`: usually one already in the statement, sometimes a new one.
    fn index_for(&mut self, r: &Range) -> String {
        let existing: Vec<String> = self.ranges.iter().filter(|(_, x)| *x == r).map(|(k, _)| k.clone()).collect();
        if !existing.is_empty() && self.rng.below(4) > 0 {
            return self.rng.pick(&existing).clone();
        }
        let names = index_names(r);
        let name = match names.iter().find(|n| !self.ranges.contains_key(**n) && !self.retired.contains(**n)) {
            Some(n) => {
                self.ranges.insert(n.to_string(), r.clone());
                n.to_string()
            }
            None => match existing.first() {
                Some(e) => e.clone(),
                None => {
                    // Every short name is taken: number a new one.
                    let n = (2..).map(|k| format!("{}{k}", names[0])).find(|n| !self.ranges.contains_key(n) && !self.retired.contains(n));
                    let n = n.unwrap_or_else(|| names[0].to_string());
                    self.ranges.insert(n.clone(), r.clone());
                    n
                }
            },
        };
        self.bound.insert(name.clone());
        name
    }

    fn access(&mut self, t: usize) -> String {
        let (name, axes) = (self.tensors[t].name.clone(), self.tensors[t].axes.clone());
        if axes.is_empty() {
            return name;
        }
        let items: Vec<String> = axes
            .iter()
            .map(|r| match r {
                Range::Prod(a, b) => {
                    let (x, y) = (self.index_for(&Range::Dim(a)), self.index_for(&Range::Dim(b)));
                    format!("({x}, {y})")
                }
                r => self.index_for(r),
            })
            .collect();
        format!("{name}[{}]", items.join(", "))
    }

    fn leaf(&mut self) -> String {
        match self.rng.below(12) {
            0 => (*self.rng.pick(&["0.5", "2", "1", "3", "0.25", "1e-3", "10"])).to_string(),
            1 => self.dim_name().unwrap_or("1").to_string(),
            2 if !self.ranges.is_empty() => {
                let ks: Vec<String> = self.ranges.iter().filter(|(_, r)| !matches!(r, Range::Prod(..))).map(|(k, _)| k.clone()).collect();
                if ks.is_empty() {
                    "1".into()
                } else {
                    self.rng.pick(&ks).clone()
                }
            }
            _ => {
                let t = self.rng.below(self.tensors.len());
                self.access(t)
            }
        }
    }

    fn cond(&mut self, depth: usize) -> String {
        let ks: Vec<String> = self.ranges.iter().filter(|(_, r)| !matches!(r, Range::Prod(..))).map(|(k, _)| k.clone()).collect();
        let op = *self.rng.pick(&["<=", "<", "==", "!=", ">=", ">"]);
        let atom = match (self.rng.below(4), ks.is_empty()) {
            (0, _) | (_, true) => format!("{} {op} {}", self.expr(depth + 2), self.rng.pick(&["0", "0.5", "-0.25"])),
            (1, false) => {
                let bound = match (self.rng.below(4), self.dim_name()) {
                    (0, Some(d)) => format!("{d} - 1"),
                    (k, _) => ["0", "1", "2", "1"][k].to_string(),
                };
                format!("{} {op} {bound}", self.rng.pick(&ks))
            }
            _ => {
                let a = self.rng.pick(&ks).clone();
                let b = self.rng.pick(&ks).clone();
                if self.rng.one_in(4) {
                    format!("{a} + 1 {op} {b}")
                } else {
                    format!("{a} {op} {b}")
                }
            }
        };
        match self.rng.below(8) {
            0 => format!("!({atom})"),
            1 => format!("{atom} && {}", self.cond(depth + 1)),
            2 => format!("{atom} || {}", self.cond(depth + 1)),
            _ => atom,
        }
    }

    fn expr(&mut self, depth: usize) -> String {
        if depth >= 3 {
            return self.leaf();
        }
        match self.rng.below(14) {
            0..=2 => self.leaf(),
            3 | 4 => {
                // A contraction: a product of two or three reads sharing indices.
                let k = 2 + self.rng.below(2);
                (0..k).map(|_| {
                    let t = self.rng.below(self.tensors.len());
                    self.access(t)
                }).collect::<Vec<_>>().join(" * ")
            }
            5 => format!("{} + {}", self.expr(depth + 1), self.expr(depth + 1)),
            6 => format!("{} - ({})", self.expr(depth + 1), self.expr(depth + 1)),
            7 => format!("({}) * ({})", self.expr(depth + 1), self.expr(depth + 1)),
            8 => format!("({}) / ({} + 2)", self.expr(depth + 1), self.leaf_abs()),
            9 => {
                let f = *self.rng.pick(&["exp", "tanh", "sigmoid", "relu", "abs", "sin", "cos", "sqrt", "log", "rsqrt"]);
                let arg = self.expr(depth + 1);
                if matches!(f, "sqrt" | "log" | "rsqrt") && self.rng.below(3) > 0 {
                    format!("{f}(abs({arg}) + 0.5)")
                } else {
                    format!("{f}({arg})")
                }
            }
            10 => {
                let f = *self.rng.pick(&["max", "min", "pow"]);
                let (a, b) = (self.expr(depth + 1), self.expr(depth + 1));
                if f == "pow" {
                    format!("pow(abs({a}) + 0.1, {})", self.rng.pick(&["2", "0.5", "3", "1.5"]))
                } else {
                    format!("{f}({a}, {b})")
                }
            }
            11 | 12 => {
                let c = self.cond(depth);
                let other = *self.rng.pick(&["0", "-inf", "1"]);
                let e = self.expr(depth + 1);
                if self.rng.one_in(3) {
                    format!("select({c}, {}, {e})", self.expr(depth + 1))
                } else {
                    format!("select({c}, {e}, {other})")
                }
            }
            _ => {
                // An inline reduction over a fresh index.
                let dims: Vec<Range> = self.tensors.iter().flat_map(|t| t.axes.iter().cloned()).filter(|r| !matches!(r, Range::Prod(..))).collect();
                let Some(r) = (if dims.is_empty() { None } else { Some(self.rng.pick(&dims).clone()) }) else {
                    return self.leaf();
                };
                let names = index_names(&r);
                let Some(k) = names.iter().find(|n| !self.ranges.contains_key(**n) && !self.retired.contains(**n)) else {
                    return self.leaf();
                };
                self.ranges.insert(k.to_string(), r.clone());
                self.retired.insert(k.to_string());
                let holders: Vec<usize> = (0..self.tensors.len()).filter(|&t| self.tensors[t].axes.contains(&r)).collect();
                let t = *self.rng.pick(&holders);
                let body = format!("{} * ({})", self.access_with(t, k, &r), self.expr(depth + 1));
                // The reduction's index is not visible after it.
                self.ranges.remove(*k);
                let kw = *self.rng.pick(&["sum", "sum", "max", "min"]);
                format!("{kw}[{k}]({body})")
            }
        }
    }

    /// A dim of the signature, to use as a number.
    fn dim_name(&mut self) -> Option<&'static str> {
        let ds: Vec<&'static str> = self
            .tensors
            .iter()
            .flat_map(|t| t.axes.iter())
            .filter_map(|r| if let Range::Dim(d) = r { Some(*d) } else { None })
            .collect();
        if ds.is_empty() {
            None
        } else {
            Some(*self.rng.pick(&ds))
        }
    }

    fn leaf_abs(&mut self) -> String {
        format!("abs({})", self.leaf())
    }

    /// A read of tensor `t` that uses index `k` at one axis of range `r`.
    fn access_with(&mut self, t: usize, k: &str, r: &Range) -> String {
        self.bound.insert(k.to_string());
        let (name, axes) = (self.tensors[t].name.clone(), self.tensors[t].axes.clone());
        let pos = axes.iter().position(|a| a == r).unwrap_or(0);
        let items: Vec<String> = axes
            .iter()
            .enumerate()
            .map(|(j, a)| match a {
                _ if j == pos => k.to_string(),
                Range::Prod(x, y) => {
                    let (x, y) = (self.index_for(&Range::Dim(x)), self.index_for(&Range::Dim(y)));
                    format!("({x}, {y})")
                }
                a => self.index_for(a),
            })
            .collect();
        format!("{name}[{}]", items.join(", "))
    }
}

/// A random program of one function.
pub fn program(rng: &mut Rng) -> String {
    let ndims = 1 + rng.below(3);
    let dims = &DIMS[..ndims];
    let dtype = if rng.one_in(2) { "f32" } else { "f64" };
    let mut tensors: Vec<Tensor> = Vec::new();
    let ninputs = 1 + rng.below(4);
    for k in 0..ninputs {
        let rank = [0, 1, 1, 2, 2, 2, 3][rng.below(7)];
        let axes: Vec<Range> = (0..rank)
            .map(|_| match rng.below(14) {
                0 if ndims >= 2 => Range::Prod(dims[0], dims[1]),
                1 => Range::Lit(2 + rng.below(2) as u64),
                _ => Range::Dim(*rng.pick(dims)),
            })
            .collect();
        tensors.push(Tensor { name: ["A", "B", "C", "D"][k].to_string(), axes });
    }
    if tensors.iter().all(|t| t.axes.is_empty()) {
        tensors[0].axes.push(Range::Dim(dims[0]));
    }
    let nstmts = 1 + rng.below(4);
    let mut body = String::new();
    let mut last = Vec::new();
    for s in 0..nstmts {
        let name = if s + 1 == nstmts { "O".to_string() } else { format!("T{s}") };
        // Left-side ranges come from axes of tensors in scope, so some read can bind them.
        let axis_ranges: Vec<Range> =
            tensors.iter().flat_map(|t| t.axes.iter().cloned()).filter(|r| !matches!(r, Range::Prod(..))).collect();
        let rank = if axis_ranges.is_empty() { 0 } else { [0, 1, 1, 2, 2, 3][rng.below(6)] };
        let mut scope = Scope { tensors: &tensors, ranges: BTreeMap::new(), bound: Default::default(), retired: Default::default(), rng };
        let mut lhs: Vec<(String, Range)> = Vec::new();
        for _ in 0..rank {
            let r = scope.rng.pick(&axis_ranges).clone();
            let names = index_names(&r);
            if let Some(n) = names.iter().find(|n| !scope.ranges.contains_key(**n)) {
                scope.ranges.insert(n.to_string(), r.clone());
                lhs.push((n.to_string(), r));
            }
        }
        let mut rhs = scope.expr(0);
        // Every left index must be read on the right.
        for (k, r) in &lhs {
            if !scope.bound.contains(k) {
                let holders: Vec<usize> = (0..tensors.len()).filter(|&t| tensors[t].axes.contains(r)).collect();
                let t = *scope.rng.pick(&holders);
                let read = scope.access_with(t, k, r);
                rhs = match scope.rng.below(3) {
                    0 => format!("({rhs}) * {read}"),
                    1 => format!("{rhs} + {read}"),
                    _ => format!("{read} - ({rhs})"),
                };
            }
        }
        let op = *scope.rng.pick(&["=", "=", "=", "=", "max=", "min="]);
        let lhs_text = if lhs.is_empty() {
            name.clone()
        } else {
            format!("{name}[{}]", lhs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(body, "    {lhs_text} {op} {rhs}");
        let axes: Vec<Range> = lhs.iter().map(|(_, r)| r.clone()).collect();
        last = axes.clone();
        tensors.push(Tensor { name, axes });
    }
    let params: Vec<String> = tensors[..ninputs].iter().map(|t| param(&t.name, dtype, &t.axes)).collect();
    format!("fn fuzz({}) -> {} {{\n{body}}}\n", params.join(", "), param("O", dtype, &last))
}

fn param(name: &str, dtype: &str, axes: &[Range]) -> String {
    if axes.is_empty() {
        format!("{name}: {dtype}")
    } else {
        format!("{name}: {dtype}[{}]", axes.iter().map(Range::text).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated programs are meant to check; a generator that drifts from the language
    /// would quietly stop exercising the backends.
    #[test]
    fn generated_programs_check() {
        let mut rng = Rng::new(7);
        let mut failed = Vec::new();
        let n = 300;
        for _ in 0..n {
            let p = program(&mut rng);
            if let Err(e) = tessera::Module::from_source(&p) {
                failed.push(format!("{p}{e}\n"));
            }
        }
        for f in failed.iter().take(8) {
            println!("{f}");
        }
        assert!(failed.len() * 10 <= n, "{} of {n} generated programs do not check", failed.len());
    }
}
