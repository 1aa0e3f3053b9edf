//! The plan as an SVG drawing (`tessera plan --format svg`, the Python package's
//! `Plan._repr_html_`), rendered here so that no Graphviz is needed.
//!
//! Layout: tensors flow left to right. The function's inputs form the first column; a
//! step sits one column right of the latest column it reads from. Each step is a box
//! whose height grows with its share of the plan's FLOPs and whose colour goes from pale
//! yellow (cheap) to red (the most expensive step). Every edge carries the tensor it
//! moves and that tensor's shape.

use super::print::{human_bytes, human_flops};
use super::Plan;
use crate::tir;
use std::collections::HashMap;
use std::fmt::Write;

const COL_W: f64 = 300.0;
const BOX_W: f64 = 190.0;
const ROW_GAP: f64 = 34.0;
const MARGIN: f64 = 20.0;
const TOP: f64 = 56.0;
const MIN_H: f64 = 46.0;
const MAX_EXTRA_H: f64 = 60.0;

/// One node of the drawing: an input tensor or a step.
struct Node {
    col: usize,
    y: f64,
    h: f64,
}

impl Plan {
    /// The plan's steps as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let shapes = self.input_shapes();
        let total: f64 = self.steps.iter().map(|s| s.flops).sum::<f64>().max(1.0);
        let max_step = self.steps.iter().map(|s| s.flops).fold(0.0f64, f64::max).max(1.0);

        // Columns: inputs (anything read but not defined by a step) in column 0.
        let mut producer: HashMap<&str, usize> = HashMap::new();
        let mut inputs: Vec<&str> = Vec::new();
        for (k, s) in self.steps.iter().enumerate() {
            for i in &s.inputs {
                if !producer.contains_key(i.as_str()) && !inputs.contains(&i.as_str()) {
                    inputs.push(i);
                }
            }
            producer.insert(&s.result, k);
        }
        let mut step_col = vec![1usize; self.steps.len()];
        for (k, s) in self.steps.iter().enumerate() {
            let c = s
                .inputs
                .iter()
                .filter_map(|i| producer.get(i.as_str()))
                .filter(|&&p| p < k)
                .map(|&p| step_col[p] + 1)
                .max();
            step_col[k] = c.unwrap_or(1);
        }
        let heights: Vec<f64> =
            self.steps.iter().map(|s| MIN_H + MAX_EXTRA_H * (s.flops / total).clamp(0.0, 1.0)).collect();

        // Rows: stack each column's nodes top to bottom in order.
        let ncols = step_col.iter().copied().max().unwrap_or(0) + 1;
        let mut next_y = vec![TOP; ncols];
        let mut place = |col: usize, h: f64| {
            let y = next_y[col];
            next_y[col] += h + ROW_GAP;
            Node { col, y, h }
        };
        let input_nodes: Vec<Node> = inputs.iter().map(|_| place(0, 34.0)).collect();
        let step_nodes: Vec<Node> = (0..self.steps.len()).map(|k| place(step_col[k], heights[k])).collect();
        let height = next_y.iter().copied().fold(TOP, f64::max) + MARGIN;
        let width = MARGIN * 2.0 + (ncols as f64 - 1.0) * COL_W + BOX_W;
        let x_of = |col: usize| MARGIN + col as f64 * COL_W;

        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="monospace" font-size="11">"#,
            w = width,
            h = height
        );
        let _ = writeln!(
            out,
            r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##
        );
        let dims: Vec<String> = self.dims.iter().map(|d| format!("{} = {}", d.name, d.size)).collect();
        let _ = writeln!(
            out,
            r#"<text x="{MARGIN}" y="20" font-size="13" font-weight="bold">plan for {} ({}{})</text>"#,
            esc(&self.function),
            esc(&self.dtype),
            if dims.is_empty() { String::new() } else { format!("; {}", esc(&dims.join(", "))) }
        );
        let _ = writeln!(
            out,
            r#"<text x="{MARGIN}" y="38">{} FLOPs ({} naive, {:.1}x fewer); peak intermediate {}</text>"#,
            human_flops(self.flops),
            human_flops(self.naive_flops),
            self.speedup,
            esc(&human_bytes(self.peak_bytes))
        );

        // Edges first, so that boxes are drawn over their ends.
        let result_shape = |k: usize| {
            format!("[{}]", self.steps[k].shape.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
        };
        for (k, s) in self.steps.iter().enumerate() {
            let to = &step_nodes[k];
            let n_in = s.inputs.len().max(1) as f64;
            for (j, i) in s.inputs.iter().enumerate() {
                let (from, shape) = match producer.get(i.as_str()).filter(|&&p| p < k) {
                    Some(&p) => (&step_nodes[p], result_shape(p)),
                    None => match inputs.iter().position(|x| x == i) {
                        Some(p) => (&input_nodes[p], shapes.get(i.as_str()).cloned().unwrap_or_default()),
                        None => continue,
                    },
                };
                let (x1, y1) = (x_of(from.col) + BOX_W, from.y + from.h / 2.0);
                let (x2, y2) = (x_of(to.col), to.y + to.h * (j as f64 + 1.0) / (n_in + 1.0));
                let mx = (x1 + x2) / 2.0;
                let _ = writeln!(
                    out,
                    r##"<path d="M{x1:.1},{y1:.1} C{mx:.1},{y1:.1} {mx:.1},{y2:.1} {x2:.1},{y2:.1}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>"##
                );
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333" paint-order="stroke" stroke="#fff" stroke-width="3">{}{}</text>"##,
                    mx,
                    (y1 + y2) / 2.0 - 3.0,
                    esc(i),
                    esc(&shape)
                );
            }
        }
        for (p, name) in inputs.iter().enumerate() {
            let n = &input_nodes[p];
            let x = x_of(0);
            let _ = writeln!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="{BOX_W}" height="{:.1}" rx="17" fill="#e8f0fe" stroke="#4a6fa5"/>"##,
                n.y, n.h
            );
            let label = format!("{name}{}", shapes.get(*name).cloned().unwrap_or_default());
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x + BOX_W / 2.0,
                n.y + n.h / 2.0 + 4.0,
                esc(&label)
            );
        }
        for (k, s) in self.steps.iter().enumerate() {
            let n = &step_nodes[k];
            let x = x_of(n.col);
            let share = (s.flops / max_step).clamp(0.0, 1.0);
            let fill = heat(share);
            let _ = writeln!(
                out,
                r##"<g><title>step {k}: {} = {} ({} FLOPs, {})</title><rect x="{x:.1}" y="{:.1}" width="{BOX_W}" height="{:.1}" rx="4" fill="{fill}" stroke="#333"/>"##,
                esc(&s.result),
                esc(&s.einsum),
                human_flops(s.flops),
                esc(&human_bytes(s.bytes)),
                n.y,
                n.h
            );
            let kind = match &s.kind {
                super::StepKind::Contract { .. } => "contract".to_string(),
                super::StepKind::Map => "map".to_string(),
                super::StepKind::Reduce { op } => format!("reduce {op}"),
            };
            let cx = x + BOX_W / 2.0;
            let lines = [
                format!("{k}: {kind} → {}{}", s.result, result_shape(k)),
                clip(&s.einsum, 30),
                format!("{} FLOPs ({:.0}%)", human_flops(s.flops), 100.0 * s.flops / total),
            ];
            let top = n.y + n.h / 2.0 - 12.0;
            for (l, text) in lines.iter().enumerate() {
                let _ = writeln!(
                    out,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    top + 14.0 * l as f64 + 4.0,
                    esc(text)
                );
            }
            out.push_str("</g>\n");
        }
        out.push_str("</svg>\n");
        out
    }

    /// The shapes of the tensors the steps read but do not define (the function's
    /// inputs and constants), as `[64, 32]`, from the plan's program and dims.
    fn input_shapes(&self) -> HashMap<&str, String> {
        let f = &self.program;
        let mut b = tir::Bindings::new(f.dims.len());
        for d in &self.dims {
            if let Some(id) = f.dim_by_name(&d.name) {
                b.set(id, d.size);
            }
        }
        let mut out = HashMap::new();
        for s in &self.steps {
            for i in &s.inputs {
                if let Some(t) = f.tensor_by_name(i) {
                    let dims: Option<Vec<String>> =
                        f.tensor(t).shape.iter().map(|x| x.eval(&b).ok().map(|v| v.to_string())).collect();
                    if let Some(dims) = dims {
                        out.insert(i.as_str(), format!("[{}]", dims.join(", ")));
                    }
                }
            }
        }
        out
    }
}

/// Pale yellow at 0 to red at 1.
fn heat(share: f64) -> String {
    let t = share.sqrt();
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", lerp(255.0, 226.0), lerp(247.0, 74.0), lerp(204.0, 51.0))
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
