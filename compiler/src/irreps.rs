//! Irreducible representations of O(3) and e3nn-style tensor products over them, written
//! out as `.tsr` programs.
//!
//! A feature of an equivariant network is a list of blocks `mul x l p` (e3nn's `Irreps`,
//! for example `32x0e + 32x1o + 32x2e`): `mul` channels, each with the `2l+1` components
//! of degree `l` and parity `p` (`e` even, `o` odd, `y` for `(-1)^l`). A flat feature of
//! a batch is `[z, dim]`, the blocks side by side, each laid out `[mul, 2l+1]`.
//!
//! [`TensorProduct`] couples two such features over every allowed path
//! `(l1 p1) ⊗ (l2 p2) → (l3 p3)` (triangle rule, `p3 = p1 p2`), in one of e3nn's
//! instruction modes, with e3nn's default normalisation (`irrep_normalization =
//! "component"`, `path_normalization = "element"`, unit input variances), so its
//! results equal `e3nn.o3.TensorProduct`'s for the same instructions and weights:
//! - `uvw` (e3nn's `FullyConnectedTensorProduct`):
//!   `out[z, w, k] += α W[u, v, w] C[i, j, k] x[z, u, i] y[z, v, j]`;
//! - `uvu` (channel-wise, as in NequIP's convolution; needs `out.mul == x.mul`):
//!   `out[z, u, k] += α W[u, v] C[i, j, k] x[z, u, i] y[z, v, j]`.
//!
//! `C` is `cg(l1, l2, l3)` (e3nn's `wigner_3j`), a compile-time constant, so each path
//! runs unrolled by its nonzeros. [`TensorProduct::source`] writes the program: one input
//! per block of each feature (`x0, x1, ...`, `y0, ...`, shaped `[z, mul, 2l+1]`), one
//! weight per instruction in instruction order (`w0, w1, ...`; e3nn's flat weight vector
//! is these, each flattened, one after the other) and one output per output block
//! (`out0, ...`). The facade's `equivariant::TensorProduct` runs it on flat features.

use crate::constants::MAX_DEGREE;
use std::fmt;
use std::str::FromStr;
use tessera_runtime::DType;

/// The most channels a block may have: far beyond any model, and small enough that
/// every size derived from a block (a weight of `mul1·mul2·mul3` entries, a flat
/// feature's length) fits in 64 bits.
pub const MAX_MULTIPLICITY: usize = 1 << 16;

/// The most blocks an irreps description may have (paths are tried for every triple of
/// blocks, so this bounds the work of [`TensorProduct::new`]).
pub const MAX_BLOCKS: usize = 256;

/// An irreducible representation of O(3): degree `l`, parity `p` (+1 even, -1 odd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Irrep {
    pub l: u32,
    pub p: i8,
}

impl Irrep {
    /// Components: `2l + 1`.
    pub fn dim(self) -> usize {
        2 * self.l as usize + 1
    }
}

impl fmt::Display for Irrep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.l, if self.p > 0 { 'e' } else { 'o' })
    }
}

/// `mul` copies (channels) of one irrep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MulIr {
    pub mul: usize,
    pub ir: Irrep,
}

impl MulIr {
    pub fn dim(self) -> usize {
        self.mul * self.ir.dim()
    }
}

/// A list of blocks, in order (never sorted or merged, as in e3nn).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Irreps(pub Vec<MulIr>);

/// Why a description of irreps or a tensor product is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IrrepsError {
    #[error("cannot read irreps {text:?}: {why} (expected blocks like `32x0e + 16x1o + 2e`)")]
    Syntax { text: String, why: String },
    #[error("irrep degree {l} in {text:?} is too large: the largest supported degree is {max}")]
    Degree { text: String, l: u32, max: u32 },
    #[error("irreps {text:?} have {blocks} blocks: at most {max} are supported")]
    Blocks { text: String, blocks: usize, max: usize },
    #[error("multiplicity {mul} in {text:?} is too large: at most {max} channels per block")]
    Multiplicity { text: String, mul: usize, max: usize },
    #[error("no instruction couples {in1} and {in2} into {out} in mode {mode}{hint}")]
    NoPath { in1: Irreps, in2: Irreps, out: Irreps, mode: Mode, hint: &'static str },
}

impl FromStr for Irreps {
    type Err = IrrepsError;

    fn from_str(text: &str) -> Result<Irreps, IrrepsError> {
        let bad = |why: String| IrrepsError::Syntax { text: text.to_string(), why };
        let mut blocks = Vec::new();
        if text.trim().is_empty() {
            return Ok(Irreps(blocks));
        }
        let count = text.split('+').count();
        if count > MAX_BLOCKS {
            return Err(IrrepsError::Blocks { text: text.chars().take(40).collect::<String>() + "…", blocks: count, max: MAX_BLOCKS });
        }
        for part in text.split('+') {
            let part = part.trim();
            let (mul, ir) = match part.split_once('x') {
                Some((m, ir)) => (m.trim().parse::<usize>().map_err(|_| bad(format!("`{m}` is not a multiplicity")))?, ir.trim()),
                None => (1, part),
            };
            let Some(last) = ir.chars().last() else { return Err(bad("an empty block".into())) };
            let l: u32 = ir[..ir.len() - last.len_utf8()].parse().map_err(|_| bad(format!("`{part}` has no degree")))?;
            let p = match last {
                'e' => 1,
                'o' => -1,
                'y' => {
                    if l.is_multiple_of(2) {
                        1
                    } else {
                        -1
                    }
                }
                other => return Err(bad(format!("parity `{other}` in `{part}` is not e, o or y"))),
            };
            if l > MAX_DEGREE {
                return Err(IrrepsError::Degree { text: text.to_string(), l, max: MAX_DEGREE });
            }
            if mul > MAX_MULTIPLICITY {
                return Err(IrrepsError::Multiplicity { text: text.to_string(), mul, max: MAX_MULTIPLICITY });
            }
            blocks.push(MulIr { mul, ir: Irrep { l, p } });
        }
        Ok(Irreps(blocks))
    }
}

impl fmt::Display for Irreps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, b) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str("+")?;
            }
            write!(f, "{}x{}", b.mul, b.ir)?;
        }
        Ok(())
    }
}

impl Irreps {
    /// The length of a flat feature: `Σ mul (2l + 1)`.
    pub fn dim(&self) -> usize {
        self.0.iter().map(|b| b.dim()).sum()
    }

    /// Where each block starts in a flat feature.
    pub fn offsets(&self) -> Vec<usize> {
        self.0
            .iter()
            .scan(0, |at, b| {
                let o = *at;
                *at += b.dim();
                Some(o)
            })
            .collect()
    }
}

/// How channels couple along one path (e3nn's `connection_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every input channel pair into every output channel, `W[u, v, w]`.
    Uvw,
    /// Channel `u` of the first input into channel `u` of the output, `W[u, v]`.
    Uvu,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Uvw => "uvw",
            Mode::Uvu => "uvu",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "uvw" => Ok(Mode::Uvw),
            "uvu" => Ok(Mode::Uvu),
            other => Err(format!("unknown tensor-product mode `{other}`: expected uvw or uvu")),
        }
    }
}

/// One path: blocks `i_in1 ⊗ i_in2 → i_out`, its weight's shape and its coefficient.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    pub i_in1: usize,
    pub i_in2: usize,
    pub i_out: usize,
    /// `[mul1, mul2, mul_out]` (uvw) or `[mul1, mul2]` (uvu).
    pub weight_shape: Vec<usize>,
    /// e3nn's normalisation coefficient `sqrt(alpha)` (the instruction's `path_weight`
    /// after normalisation).
    pub coefficient: f64,
}

/// A tensor product of two irreps features over every allowed path.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorProduct {
    pub in1: Irreps,
    pub in2: Irreps,
    pub out: Irreps,
    pub mode: Mode,
    pub instructions: Vec<Instruction>,
}

impl TensorProduct {
    /// Every allowed path, in e3nn's order (first input's blocks outermost, then the
    /// second's, then the output's), with e3nn's default normalisation. In mode `uvu` a
    /// path needs as many output channels as first-input channels. Blocks with no
    /// channels take part in no path.
    pub fn new(in1: Irreps, in2: Irreps, out: Irreps, mode: Mode) -> Result<TensorProduct, IrrepsError> {
        let mut instructions = Vec::new();
        for (i1, a) in in1.0.iter().enumerate() {
            for (i2, b) in in2.0.iter().enumerate() {
                for (o, c) in out.0.iter().enumerate() {
                    let allowed = a.ir.p * b.ir.p == c.ir.p && a.ir.l.abs_diff(b.ir.l) <= c.ir.l && c.ir.l <= a.ir.l + b.ir.l;
                    let channels = mode == Mode::Uvw || a.mul == c.mul;
                    if !allowed || !channels || a.dim() == 0 || b.dim() == 0 || c.dim() == 0 {
                        continue;
                    }
                    let weight_shape = match mode {
                        Mode::Uvw => vec![a.mul, b.mul, c.mul],
                        Mode::Uvu => vec![a.mul, b.mul],
                    };
                    instructions.push(Instruction { i_in1: i1, i_in2: i2, i_out: o, weight_shape, coefficient: 0.0 });
                }
            }
        }
        if instructions.is_empty() {
            let hint = if mode == Mode::Uvu { " (mode uvu needs output blocks with as many channels as the first input's)" } else { "" };
            return Err(IrrepsError::NoPath { in1, in2, out, mode, hint });
        }
        // e3nn: alpha = dim(l_out) / Σ_{paths into the same output} elements(path), where
        // a path's elements are mul1·mul2 (uvw) or mul2 (uvu); the coefficient is its root.
        let elements = |ins: &Instruction| -> f64 {
            let (a, b) = (in1.0[ins.i_in1], in2.0[ins.i_in2]);
            match mode {
                Mode::Uvw => (a.mul * b.mul) as f64,
                Mode::Uvu => b.mul as f64,
            }
        };
        let fan_in: Vec<f64> = (0..out.0.len()).map(|o| instructions.iter().filter(|i| i.i_out == o).map(elements).sum()).collect();
        for ins in &mut instructions {
            let x = fan_in[ins.i_out];
            let alpha = out.0[ins.i_out].ir.dim() as f64 / if x > 0.0 { x } else { 1.0 };
            ins.coefficient = alpha.sqrt();
        }
        Ok(TensorProduct { in1, in2, out, mode, instructions })
    }

    /// The length of e3nn's flat weight vector: every instruction's weights, flattened.
    pub fn weight_numel(&self) -> usize {
        self.instructions.iter().map(|i| i.weight_shape.iter().product::<usize>()).sum()
    }

    /// The name of the generated function.
    pub const FUNCTION: &'static str = "tensor_product";

    /// The `.tsr` program, in `dtype`: inputs `x<k>` (first feature's blocks), `y<k>`
    /// (second's), `w<k>` (instructions' weights), outputs `out<k>`; the batch dim is `z`.
    pub fn source(&self, dtype: DType) -> String {
        let ty = dtype.name();
        let mut s = String::new();
        s.push_str(&format!(
            "# {} ⊗ {} → {}, mode {}: {} paths (generated by tessera_compiler::irreps).\n",
            self.in1,
            self.in2,
            self.out,
            self.mode,
            self.instructions.len()
        ));
        let mut params = Vec::new();
        for (k, b) in self.in1.0.iter().enumerate() {
            params.push(format!("x{k}: {ty}[z, {}, {}]", b.mul, b.ir.dim()));
        }
        for (k, b) in self.in2.0.iter().enumerate() {
            params.push(format!("y{k}: {ty}[z, {}, {}]", b.mul, b.ir.dim()));
        }
        for (k, ins) in self.instructions.iter().enumerate() {
            let shape: Vec<String> = ins.weight_shape.iter().map(|d| d.to_string()).collect();
            params.push(format!("w{k}: {ty}[{}]", shape.join(", ")));
        }
        let outs: Vec<String> = self.out.0.iter().enumerate().map(|(k, b)| format!("out{k}: {ty}[z, {}, {}]", b.mul, b.ir.dim())).collect();
        s.push_str(&format!("fn {}(\n    {},\n) -> ({}) {{\n", Self::FUNCTION, params.join(",\n    "), outs.join(", ")));
        let mut consts: Vec<(u32, u32, u32)> = Vec::new();
        for ins in &self.instructions {
            let key = (self.in1.0[ins.i_in1].ir.l, self.in2.0[ins.i_in2].ir.l, self.out.0[ins.i_out].ir.l);
            if !consts.contains(&key) {
                consts.push(key);
                s.push_str(&format!("    C{}_{}_{} = cg({}, {}, {})\n", key.0, key.1, key.2, key.0, key.1, key.2));
            }
        }
        for (o, _) in self.out.0.iter().enumerate() {
            let terms: Vec<String> = self
                .instructions
                .iter()
                .enumerate()
                .filter(|(_, i)| i.i_out == o)
                .map(|(k, ins)| {
                    let (l1, l2, l3) = (self.in1.0[ins.i_in1].ir.l, self.in2.0[ins.i_in2].ir.l, self.out.0[ins.i_out].ir.l);
                    // Summed indices are per term: their ranges differ between paths.
                    let (u, v, i, j) = match self.mode {
                        Mode::Uvw => (format!("u{k}"), format!("v{k}"), format!("i{k}"), format!("j{k}")),
                        Mode::Uvu => ("u".to_string(), format!("v{k}"), format!("i{k}"), format!("j{k}")),
                    };
                    let w = match self.mode {
                        Mode::Uvw => format!("w{k}[{u}, {v}, c]"),
                        Mode::Uvu => format!("w{k}[{u}, {v}]"),
                    };
                    format!("{:?} * {w} * C{l1}_{l2}_{l3}[{i}, {j}, m] * x{}[n, {u}, {i}] * y{}[n, {v}, {j}]", ins.coefficient, ins.i_in1, ins.i_in2)
                })
                .collect();
            let channel = match self.mode {
                Mode::Uvw => "c",
                Mode::Uvu => "u",
            };
            let rhs = if terms.is_empty() { "0".to_string() } else { terms.join("\n        + ") };
            s.push_str(&format!("    out{o}[n, {channel}, m] = {rhs}\n"));
        }
        s.push_str("}\n");
        s
    }
}

#[cfg(test)]
mod tests;
