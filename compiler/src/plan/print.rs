//! The plan as a table for people (`tessera plan`, `Display`): a header with the totals
//! against the naive cost, then one aligned line per step.

use super::{Plan, StepKind};
use std::fmt;

/// `1.5 KiB`, `3.0 MiB`, `12 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// FLOPs in scientific notation with three significant digits (`2.62e5`), or plain below 1000.
pub fn human_flops(f: f64) -> String {
    // `Sum` of no f64s is -0.0; show it as 0.
    let f = f + 0.0;
    if f < 1000.0 {
        format!("{f}")
    } else {
        format!("{f:.2e}")
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(|d| format!("{} = {}", d.name, d.size)).collect();
        writeln!(f, "plan for `{}` ({}; {})", self.function, self.dtype, if dims.is_empty() { "no dims".into() } else { dims.join(", ") })?;
        writeln!(
            f,
            "  FLOPs    {} optimised, {} naive ({}x fewer)",
            human_flops(self.flops),
            human_flops(self.naive_flops),
            // Naive counts of big networks reach 1e47: digits beyond a few say nothing.
            if self.speedup < 1e6 { format!("{:.1}", self.speedup) } else { format!("{:.2e}", self.speedup) }
        )?;
        let limit = match self.memory_limit {
            Some(l) if !self.slices.is_empty() => format!(" (limit {}: sliced)", human_bytes(l)),
            Some(l) => format!(" (limit {})", human_bytes(l)),
            None => String::new(),
        };
        writeln!(f, "  memory   peak intermediate {}{limit}", human_bytes(self.peak_bytes))?;
        if let crate::tir::lmul::MulMode::Lmul(m) = self.mul {
            let bits = if m == 0 { "every mantissa bit".to_string() } else { format!("{m}-bit mantissas") };
            writeln!(f, "  mul      {} (every product is an L-Mul with {bits}; contractions run as loops)", self.mul)?;
        }
        write!(f, "  search   {:.2} ms", self.search_ms)?;
        if let Some(a) = self.algebra.as_ref().filter(|a| a.iterations == 0 && a.nodes == 0) {
            // The pass did not run (or gave up at once): its counts say nothing.
            write!(f, "; algebra: {}", a.stop_reason)?;
        } else if let Some(a) = &self.algebra {
            write!(
                f,
                "; algebra: {} after {} iterations, {} e-nodes, cost {} -> {}",
                a.stop_reason,
                a.iterations,
                a.nodes,
                human_flops(a.cost_before),
                human_flops(a.cost_after)
            )?;
        }
        writeln!(f)?;
        if let Some(p) = &self.path {
            // Python's tuple syntax, as opt_einsum prints paths: `(0, 1)`, `(0,)`.
            let pairs: Vec<String> = p
                .iter()
                .map(|t| match t.as_slice() {
                    [a] => format!("({a},)"),
                    _ => format!("({})", t.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
                })
                .collect();
            writeln!(f, "  path     [{}]", pairs.join(", "))?;
        }
        writeln!(f)?;
        let rows: Vec<[String; 7]> = self
            .steps
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (kind, roles) = match &s.kind {
                    StepKind::Contract { batch, m, n, k, sum_a, sum_b } => {
                        let mut r = Vec::new();
                        for (name, v) in [("batch", batch), ("M", m), ("N", n), ("K", k), ("sum", sum_a), ("sum", sum_b)] {
                            if !v.is_empty() {
                                r.push(format!("{name} {}", v.join(" ")));
                            }
                        }
                        ("contract".to_string(), format!("  [{}]", r.join("; ")))
                    }
                    StepKind::Map => ("map".to_string(), String::new()),
                    StepKind::Reduce { op } => (format!("reduce {op}"), String::new()),
                };
                let shape: Vec<String> = s.shape.iter().map(|x| x.to_string()).collect();
                [
                    k.to_string(),
                    kind,
                    format!("{}[{}]", s.result, shape.join(", ")),
                    format!("{}{roles}", s.einsum),
                    human_flops(s.flops),
                    human_bytes(s.bytes),
                    s.statement.to_string(),
                ]
            })
            .collect();
        let header = ["step", "kind", "result", "operation", "FLOPs", "bytes", "stmt"];
        let mut w = header.map(|h| h.chars().count());
        for r in &rows {
            for (c, cell) in r.iter().enumerate() {
                w[c] = w[c].max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 7]| -> String {
            let mut s = String::from("  ");
            for (c, cell) in cells.iter().enumerate() {
                let pad = w[c].saturating_sub(cell.chars().count());
                // Numbers align right, text left.
                if c == 0 || c == 4 || c == 5 || c == 6 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("  ");
            }
            s.trim_end().to_string()
        };
        writeln!(f, "{}", line(header))?;
        for r in &rows {
            writeln!(f, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]))?;
        }
        for u in &self.fusions {
            let mask = u.mask.as_ref().map_or(String::new(), |m| format!("; mask {m}"));
            let result = u.steps.last().and_then(|&k| self.steps.get(k)).map_or("?", |s| s.result.as_str());
            writeln!(
                f,
                "  fused    steps {} -> {result}: online softmax over {} (row {}{mask}), streamed by blocks of keys, {} FLOPs",
                ranges(&u.steps),
                u.keys.join(", "),
                u.row,
                human_flops(u.flops),
            )?;
        }
        for s in &self.slices {
            writeln!(
                f,
                "  slice over {} ({} iterations) around steps {}..={}, {} extra FLOPs",
                s.indices.join(", "),
                s.count,
                s.first,
                s.last,
                human_flops(s.extra_flops)
            )?;
        }
        Ok(())
    }
}

/// `0..=5`, `0, 2..=4`: sorted numbers as runs.
fn ranges(xs: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < xs.len() {
        let mut j = k;
        while j + 1 < xs.len() && xs[j + 1] == xs[j] + 1 {
            j += 1;
        }
        out.push(if j > k { format!("{}..={}", xs[k], xs[j]) } else { xs[k].to_string() });
        k = j + 1;
    }
    out.join(", ")
}

impl Plan {
    /// The plan's steps as a DOT graph: tensors as nodes, steps as labelled edges.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"plan {}\" {{\n  rankdir=LR;\n  node [fontname=\"monospace\", shape=box];\n", esc(&self.function));
        let mut seen: Vec<&str> = Vec::new();
        for (k, s) in self.steps.iter().enumerate() {
            for t in s.inputs.iter().map(|x| x.as_str()).chain(std::iter::once(s.result.as_str())) {
                if !seen.contains(&t) {
                    seen.push(t);
                    out.push_str(&format!("  \"{}\";\n", esc(t)));
                }
            }
            let label = format!("{k}: {} ({} FLOPs)", s.einsum, human_flops(s.flops));
            for i in &s.inputs {
                out.push_str(&format!("  \"{}\" -> \"{}\" [label=\"{}\"];\n", esc(i), esc(&s.result), esc(&label)));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
