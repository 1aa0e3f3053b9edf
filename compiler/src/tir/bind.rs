//! Binding a function's dims to concrete sizes from input shapes and explicit values.
//!
//! Explicit values bind first. Then every input axis is matched against its declared
//! size: a plain dim binds directly, a literal must match, and a product such as `q * s`
//! is solved for a single unknown factor by exact division (repeated until nothing
//! changes, so one input can determine the factor another input needs). Every message
//! names the input, the axis and the dims involved.

use super::*;

/// Where a dim got its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimSource {
    /// Given by the caller (`--dim n=4` or from Rust).
    Explicit,
    /// Read from one axis of an input array.
    Input { tensor: String, axis: usize },
}

impl fmt::Display for DimSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimSource::Explicit => f.write_str("as given explicitly"),
            DimSource::Input { tensor, axis } => write!(f, "from {tensor} (axis {axis})"),
        }
    }
}

/// Why dims could not be bound. Each message is one paragraph meant for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("fn {function} takes {} ({signature}) but {} given", count(.expected, "input"), were(.got, "array"))]
    InputCount { function: String, expected: usize, got: usize, signature: String },

    #[error("input {tensor}: {decl} has {} but the array given for it has {} (shape {shape})", count(.expected, "axis"), count(.got, "axis"))]
    Rank { tensor: String, decl: String, expected: usize, got: usize, shape: String },

    #[error("dim {dim} is {first} {first_source} but {second} {second_source}")]
    Conflict { dim: String, first: u64, first_source: DimSource, second: u64, second_source: DimSource },

    #[error("axis {axis} of input {tensor}: {decl} must have size {expected} but the array given has size {got}")]
    Literal { tensor: String, decl: String, axis: usize, expected: u64, got: u64 },

    #[error("axis {axis} of input {tensor}: {decl} has size {got} but {size} = {value} ({detail})")]
    Product { tensor: String, decl: String, axis: usize, size: String, value: u64, got: u64, detail: String },

    #[error("axis {axis} of input {tensor}: {decl} has size {got}, {reason}")]
    Unsolvable { tensor: String, decl: String, axis: usize, got: u64, reason: String },

    #[error("there is no dim named `{name}` in fn {function}; {}", dim_list(.dims))]
    UnknownDim { name: String, function: String, dims: Vec<String> },

    #[error("dim {name} is given explicitly twice, as {first} and as {second}")]
    ExplicitTwice { name: String, first: u64, second: u64 },

    #[error("{}", unbound_message(.names))]
    Unbound { names: Vec<String> },

    #[error("{what} is too large: it overflows 64-bit arithmetic")]
    Overflow { what: String },

    /// The function breaks an invariant of the TIR. Always a bug.
    #[error("internal error (this is a bug in Tessera): {0}")]
    Internal(String),
}

fn count(n: &usize, noun: &str) -> String {
    match (*n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "axis") => format!("{n} axes"),
        _ => format!("{n} {noun}s"),
    }
}

fn were(n: &usize, noun: &str) -> String {
    if *n == 1 {
        format!("1 {noun} was")
    } else {
        format!("{n} {noun}s were")
    }
}

fn dim_list(dims: &[String]) -> String {
    if dims.is_empty() {
        "it has no dims".to_string()
    } else {
        format!("its dims are {}", dims.join(", "))
    }
}

fn unbound_message(names: &[String]) -> String {
    let example: Vec<String> = names.iter().map(|n| format!("--dim {n}=4")).collect();
    if names.len() == 1 {
        format!("dim {} is not determined by the inputs; give it explicitly, e.g. {}", names[0], example.join(" "))
    } else {
        format!(
            "dims {} are not determined by the inputs; give them explicitly, e.g. {}",
            names.join(", "),
            example.join(" ")
        )
    }
}

/// One input axis still to be matched against its declared size.
#[derive(Clone, Copy)]
struct Item {
    input: usize,
    axis: usize,
}

struct Binder<'a> {
    f: &'a Function,
    shapes: &'a [&'a [usize]],
    b: Bindings,
    sources: Vec<Option<DimSource>>,
}

enum Outcome {
    Done,
    Pending,
}

impl Binder<'_> {
    fn dim_name(&self, d: DimId) -> String {
        self.f.dims.get(d.index()).map_or_else(|| format!("?{}", d.0), |x| x.name.clone())
    }

    fn input_decl(&self, input: usize) -> Option<(TensorId, &TensorDecl)> {
        let t = self.f.args().nth(input)?;
        Some((t, self.f.tensors.get(t.index())?))
    }

    fn source(&self, d: DimId) -> DimSource {
        self.sources.get(d.index()).cloned().flatten().unwrap_or(DimSource::Explicit)
    }

    /// `q = 3 from A (axis 0), s = 5 as given explicitly` for the bound dims of a size.
    fn detail(&self, size: &Size) -> String {
        let mut seen: Vec<DimId> = Vec::new();
        let mut parts = Vec::new();
        for &d in &size.syms {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d);
            if let Some(v) = self.b.get(d) {
                parts.push(format!("{} = {} {}", self.dim_name(d), v, self.source(d)));
            }
        }
        parts.join(", ")
    }

    fn bind(&mut self, d: DimId, v: u64, src: DimSource) {
        self.b.set(d, v);
        if d.index() >= self.sources.len() {
            self.sources.resize(d.index() + 1, None);
        }
        self.sources[d.index()] = Some(src);
    }

    /// Matches one input axis against its declared size, binding a single unknown dim
    /// when the others are known.
    fn solve(&mut self, item: Item) -> Result<Outcome, BindError> {
        let Some((t, decl)) = self.input_decl(item.input) else {
            return Ok(Outcome::Done);
        };
        let Some(size) = decl.shape.get(item.axis).cloned() else {
            return Ok(Outcome::Done);
        };
        let got = self.shapes.get(item.input).and_then(|s| s.get(item.axis)).map_or(0, |&v| v as u64);
        let tensor = decl.name.clone();
        let decl_str = self.f.type_string(t);
        let size_str = size.display(&self.f.dims).to_string();

        let mut known = size.coeff;
        let mut unknown: Vec<DimId> = Vec::new();
        for &d in &size.syms {
            match self.b.get(d) {
                Some(v) => {
                    known = known.checked_mul(v).ok_or_else(|| BindError::Overflow {
                        what: format!(
                            "the size {size_str} of axis {} of input {tensor}: {decl_str} ({})",
                            item.axis,
                            self.detail(&size)
                        ),
                    })?;
                }
                None => unknown.push(d),
            }
        }

        if unknown.is_empty() {
            if known == got {
                return Ok(Outcome::Done);
            }
            if size.syms.is_empty() {
                return Err(BindError::Literal { tensor, decl: decl_str, axis: item.axis, expected: known, got });
            }
            if size.coeff == 1 && size.syms.len() == 1 {
                let d = size.syms[0];
                return Err(BindError::Conflict {
                    dim: self.dim_name(d),
                    first: known,
                    first_source: self.source(d),
                    second: got,
                    second_source: DimSource::Input { tensor, axis: item.axis },
                });
            }
            return Err(BindError::Product {
                detail: self.detail(&size),
                tensor,
                decl: decl_str,
                axis: item.axis,
                size: size_str,
                value: known,
                got,
            });
        }

        let d = unknown[0];
        if unknown.iter().any(|&x| x != d) {
            // Two different unknown factors: another axis may determine one of them.
            return Ok(Outcome::Pending);
        }
        let power = unknown.len() as u32;
        let name = self.dim_name(d);
        let unsolvable = |reason: String| BindError::Unsolvable {
            tensor: tensor.clone(),
            decl: decl_str.clone(),
            axis: item.axis,
            got,
            reason,
        };
        let known_part = {
            let detail = self.detail(&size);
            if detail.is_empty() {
                known.to_string()
            } else {
                format!("{known} ({detail})")
            }
        };
        if known == 0 {
            if got == 0 {
                // Zero times anything is zero: this axis says nothing about the dim.
                return Ok(Outcome::Pending);
            }
            return Err(unsolvable(format!("which cannot be {size_str} because the known part of it is {known_part}")));
        }
        if !got.is_multiple_of(known) {
            return Err(unsolvable(format!(
                "which is not a multiple of {known_part}, so dim {name} cannot be found from {size_str}"
            )));
        }
        let Some(v) = exact_root(got / known, power) else {
            return Err(unsolvable(format!("which is not {size_str} for any whole number {name}")));
        };
        self.bind(d, v, DimSource::Input { tensor, axis: item.axis });
        Ok(Outcome::Done)
    }
}

/// The whole number `v` with `v^power == x`, if there is one.
fn exact_root(x: u64, power: u32) -> Option<u64> {
    if power <= 1 {
        return Some(x);
    }
    let (mut lo, mut hi) = (0u64, x);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        match mid.checked_pow(power) {
            Some(p) if p == x => return Some(mid),
            Some(p) if p < x => lo = mid + 1,
            // Too big, or so big it overflows.
            _ => hi = mid.checked_sub(1)?,
        }
    }
    None
}

/// Binds every dim of `f` from the shapes of its arguments (`f.inputs`, then
/// `f.indices`) and from explicit `(name, value)` pairs, which bind first.
pub fn bind_dims(f: &Function, input_shapes: &[&[usize]], explicit: &[(String, u64)]) -> Result<Bindings, BindError> {
    // `tir::verify` does not check the ids in the input and output lists.
    if let Some(t) = f.args().chain(f.outputs.iter().copied()).find(|t| t.index() >= f.tensors.len()) {
        return Err(BindError::Internal(format!("tensor id {} in the signature is out of range", t.0)));
    }
    let mut binder =
        Binder { f, shapes: input_shapes, b: Bindings::new(f.dims.len()), sources: vec![None; f.dims.len()] };

    for (name, v) in explicit {
        let Some(d) = f.dim_by_name(name) else {
            return Err(BindError::UnknownDim {
                name: name.clone(),
                function: f.name.clone(),
                dims: f.dims.iter().map(|d| d.name.clone()).collect(),
            });
        };
        match binder.b.get(d) {
            Some(old) if old != *v => {
                return Err(BindError::ExplicitTwice { name: name.clone(), first: old, second: *v })
            }
            _ => binder.bind(d, *v, DimSource::Explicit),
        }
    }

    let signature = || -> String {
        f.args()
            .filter(|t| t.index() < f.tensors.len())
            .map(|t| format!("{}: {}", f.tensor(t).name, f.type_string(t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if input_shapes.len() != f.args().count() {
        return Err(BindError::InputCount {
            function: f.name.clone(),
            expected: f.args().count(),
            got: input_shapes.len(),
            signature: signature(),
        });
    }
    let mut items = Vec::new();
    for (k, shape) in input_shapes.iter().enumerate() {
        let Some((t, decl)) = binder.input_decl(k) else { continue };
        if decl.shape.len() != shape.len() {
            return Err(BindError::Rank {
                tensor: decl.name.clone(),
                decl: f.type_string(t),
                expected: decl.shape.len(),
                got: shape.len(),
                shape: format!("{shape:?}"),
            });
        }
        for axis in 0..shape.len() {
            items.push(Item { input: k, axis });
        }
    }
    // Plain dims first, so that a conflict names the simplest places.
    items.sort_by_key(|it| {
        let plain = binder
            .input_decl(it.input)
            .and_then(|(_, d)| d.shape.get(it.axis))
            .is_some_and(|s| s.coeff == 1 && s.syms.len() == 1);
        !plain
    });

    loop {
        let before = items.len();
        let mut pending = Vec::new();
        for it in items {
            if let Outcome::Pending = binder.solve(it)? {
                pending.push(it);
            }
        }
        items = pending;
        if items.is_empty() || items.len() == before {
            break;
        }
    }

    let b = binder.b;
    check_complete(f, &b)?;
    Ok(b)
}

/// Every size an expression uses as a value (`sqrt(d)`), inline reductions included.
fn value_sizes<'e>(e: &'e Expr, out: &mut Vec<&'e Size>) {
    match e {
        Expr::Size(s) => out.push(s),
        Expr::Lit(_) | Expr::Index(_) | Expr::Access(..) | Expr::Gather(..) => {}
        Expr::Neg(a) | Expr::Reduce(_, _, a) => value_sizes(a, out),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().for_each(|x| value_sizes(x, out)),
        Expr::Sub(a, b) | Expr::Div(a, b) => {
            value_sizes(a, out);
            value_sizes(b, out);
        }
        Expr::Select(c, a, b) => {
            cond_sizes(c, out);
            value_sizes(a, out);
            value_sizes(b, out);
        }
    }
}

fn cond_sizes<'e>(c: &'e Cond, out: &mut Vec<&'e Size>) {
    match c {
        Cond::Cmp(_, a, b) => {
            value_sizes(a, out);
            value_sizes(b, out);
        }
        Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|x| cond_sizes(x, out)),
        Cond::Not(x) => cond_sizes(x, out),
    }
}

/// Every dim a tensor shape, an index range or a size used as a value needs, in
/// `DimId` order.
fn needed_dims(f: &Function) -> Vec<DimId> {
    let mut out = Vec::new();
    for t in &f.tensors {
        t.shape.iter().for_each(|s| out.extend_from_slice(&s.syms));
    }
    for s in &f.stmts {
        s.indices.iter().for_each(|v| out.extend_from_slice(&v.range.syms));
        let mut sizes = Vec::new();
        value_sizes(&s.rhs, &mut sizes);
        sizes.iter().for_each(|v| out.extend_from_slice(&v.syms));
    }
    out.sort();
    out.dedup();
    out
}

/// Checks that every needed dim is bound and that no shape, index range or size value
/// overflows.
fn check_complete(f: &Function, b: &Bindings) -> Result<(), BindError> {
    let unbound: Vec<String> = needed_dims(f)
        .into_iter()
        .filter(|&d| b.get(d).is_none())
        .map(|d| f.dims.get(d.index()).map_or_else(|| format!("?{}", d.0), |x| x.name.clone()))
        .collect();
    if !unbound.is_empty() {
        return Err(BindError::Unbound { names: unbound });
    }
    let values = |s: &Size| -> String {
        let mut seen = Vec::new();
        s.syms
            .iter()
            .filter(|d| {
                let new = !seen.contains(*d);
                seen.push(**d);
                new
            })
            .map(|&d| {
                let name = f.dims.get(d.index()).map_or("?", |x| x.name.as_str());
                format!("{} = {}", name, b.get(d).unwrap_or(0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fits = |s: &Size| s.eval(b).ok().is_some_and(|v| usize::try_from(v).is_ok());
    for (k, t) in f.tensors.iter().enumerate() {
        for (axis, s) in t.shape.iter().enumerate() {
            if !fits(s) {
                return Err(BindError::Overflow {
                    what: format!(
                        "axis {axis} of {}: {} ({} with {})",
                        t.name,
                        f.type_string(TensorId(k as u32)),
                        s.display(&f.dims),
                        values(s)
                    ),
                });
            }
        }
    }
    for st in &f.stmts {
        for v in &st.indices {
            if !fits(&v.range) {
                return Err(BindError::Overflow {
                    what: format!(
                        "the range {} of index {} in `{}` (with {})",
                        v.range.display(&f.dims),
                        v.name,
                        short_stmt(f, st),
                        values(&v.range)
                    ),
                });
            }
        }
        let mut sizes = Vec::new();
        value_sizes(&st.rhs, &mut sizes);
        if let Some(s) = sizes.into_iter().find(|s| s.eval(b).is_err()) {
            return Err(BindError::Overflow {
                what: format!("the value {} in `{}` (with {})", s.display(&f.dims), short_stmt(f, st), values(s)),
            });
        }
    }
    Ok(())
}

/// The statement's text without the trailing comment of ranges.
pub(crate) fn short_stmt(f: &Function, s: &Stmt) -> String {
    let text = f.stmt_string(s);
    match text.find("    # ") {
        Some(k) => text[..k].to_string(),
        None => text,
    }
}

/// The concrete shapes of `f`'s outputs under `b`, in `f.outputs` order.
pub fn output_shapes(f: &Function, b: &Bindings) -> Result<Vec<Vec<usize>>, BindError> {
    f.outputs
        .iter()
        .map(|&t| {
            if t.index() >= f.tensors.len() {
                return Err(BindError::Internal(format!("output tensor id {} is out of range", t.0)));
            }
            f.shape(t, b).map_err(|e| match e {
                SizeError::Unbound(d) => BindError::Unbound {
                    names: vec![f.dims.get(d.index()).map_or_else(|| format!("?{}", d.0), |x| x.name.clone())],
                },
                SizeError::Overflow => BindError::Overflow {
                    what: format!("the shape of output {}: {}", f.tensor(t).name, f.type_string(t)),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testutil::Builder;

    fn matmul() -> Function {
        Builder::new("matmul")
            .input("A", "m, k")
            .input("B", "k, n")
            .output("C", "m, n")
            .stmt("C[i, j] = A[i, l] * B[l, j]")
            .build()
    }

    fn explicit(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    fn values(f: &Function, b: &Bindings) -> Vec<(String, Option<u64>)> {
        f.dims.iter().enumerate().map(|(k, d)| (d.name.clone(), b.get(DimId(k as u32)))).collect()
    }

    fn err(f: &Function, shapes: &[&[usize]], pairs: &[(&str, u64)]) -> String {
        match bind_dims(f, shapes, &explicit(pairs)) {
            Ok(b) => panic!("expected an error, got {:?}", values(f, &b)),
            Err(e) => e.to_string(),
        }
    }

    fn flat(shape: &str) -> Function {
        Builder::new("flat").input("x", shape).output("y", "q").stmt("y[i] = x[(i, j)]").build()
    }

    #[test]
    fn binds_plain_dims() {
        let f = matmul();
        let b = bind_dims(&f, &[&[2, 3], &[3, 4]], &[]).unwrap();
        let want: Vec<(String, Option<u64>)> =
            vec![("m".into(), Some(2)), ("k".into(), Some(3)), ("n".into(), Some(4))];
        assert_eq!(values(&f, &b), want);
        assert_eq!(output_shapes(&f, &b).unwrap(), vec![vec![2, 4]]);
    }

    #[test]
    fn size_zero_is_allowed() {
        let f = matmul();
        let b = bind_dims(&f, &[&[0, 3], &[3, 0]], &[]).unwrap();
        assert_eq!(output_shapes(&f, &b).unwrap(), vec![vec![0, 0]]);
    }

    #[test]
    fn wrong_number_of_inputs() {
        assert_eq!(
            err(&matmul(), &[&[2, 3], &[3, 4], &[1]], &[]),
            "fn matmul takes 2 inputs (A: f32[m, k], B: f32[k, n]) but 3 arrays were given"
        );
        assert_eq!(
            err(&matmul(), &[&[2, 3]], &[]),
            "fn matmul takes 2 inputs (A: f32[m, k], B: f32[k, n]) but 1 array was given"
        );
    }

    #[test]
    fn wrong_number_of_axes() {
        assert_eq!(
            err(&matmul(), &[&[2, 3, 4], &[3, 4]], &[]),
            "input A: f32[m, k] has 2 axes but the array given for it has 3 axes (shape [2, 3, 4])"
        );
    }

    #[test]
    fn conflicting_values() {
        assert_eq!(err(&matmul(), &[&[2, 3], &[4, 5]], &[]), "dim k is 3 from A (axis 1) but 4 from B (axis 0)");
    }

    #[test]
    fn literal_dims() {
        let f = Builder::new("lit").input("A", "m, 3").output("s", "m").stmt("s[i] = A[i, j]").build();
        assert!(bind_dims(&f, &[&[2, 3]], &[]).is_ok());
        assert_eq!(
            err(&f, &[&[2, 4]], &[]),
            "axis 1 of input A: f32[m, 3] must have size 3 but the array given has size 4"
        );
    }

    #[test]
    fn product_dims_solve_one_unknown_factor() {
        let f = flat("q*s");
        let b = bind_dims(&f, &[&[12]], &explicit(&[("q", 3)])).unwrap();
        assert_eq!(values(&f, &b), vec![("q".into(), Some(3)), ("s".into(), Some(4))]);
        assert_eq!(
            err(&f, &[&[10]], &[("q", 3)]),
            "axis 0 of input x: f32[q*s] has size 10, which is not a multiple of 3 (q = 3 as given explicitly), \
             so dim s cannot be found from q*s"
        );
        assert_eq!(
            err(&f, &[&[10]], &[("q", 3), ("s", 4)]),
            "axis 0 of input x: f32[q*s] has size 10 but q*s = 12 (q = 3 as given explicitly, s = 4 as given explicitly)"
        );
        assert_eq!(
            err(&f, &[&[12]], &[]),
            "dims q, s are not determined by the inputs; give them explicitly, e.g. --dim q=4 --dim s=4"
        );
    }

    #[test]
    fn product_with_a_constant_and_a_square() {
        let f = Builder::new("c").input("x", "2*q").output("y", "q").stmt("y[i] = x[(j, i)]").build();
        let b = bind_dims(&f, &[&[8]], &[]).unwrap();
        assert_eq!(values(&f, &b), vec![("q".into(), Some(4))]);
        assert_eq!(
            err(&f, &[&[7]], &[]),
            "axis 0 of input x: f32[2*q] has size 7, which is not a multiple of 2, so dim q cannot be found from 2*q"
        );
        let f = Builder::new("sq").input("x", "q*q").output("y", "q").stmt("y[i] = x[(i, j)]").build();
        let b = bind_dims(&f, &[&[9]], &[]).unwrap();
        assert_eq!(values(&f, &b), vec![("q".into(), Some(3))]);
        assert_eq!(
            err(&f, &[&[10]], &[]),
            "axis 0 of input x: f32[q*q] has size 10, which is not q*q for any whole number q"
        );
    }

    #[test]
    fn products_solved_through_each_other() {
        let f = Builder::new("chain")
            .input("x", "q*s")
            .input("y", "s*t")
            .input("a", "t")
            .output("o", "q")
            .stmt("o[i] = x[(i, j)]")
            .build();
        let b = bind_dims(&f, &[&[6], &[12], &[4]], &[]).unwrap();
        assert_eq!(values(&f, &b), vec![("q".into(), Some(2)), ("s".into(), Some(3)), ("t".into(), Some(4))]);
        assert_eq!(
            err(&f, &[&[6], &[12], &[5]], &[]),
            "axis 0 of input y: f32[s*t] has size 12, which is not a multiple of 5 (t = 5 from a (axis 0)), \
             so dim s cannot be found from s*t"
        );
    }

    #[test]
    fn a_zero_factor_determines_nothing() {
        let f = flat("q*s");
        assert_eq!(
            err(&f, &[&[0]], &[("q", 0)]),
            "dim s is not determined by the inputs; give it explicitly, e.g. --dim s=4"
        );
        assert!(bind_dims(&f, &[&[0]], &explicit(&[("q", 0), ("s", 5)])).is_ok());
        assert_eq!(
            err(&f, &[&[3]], &[("q", 0)]),
            "axis 0 of input x: f32[q*s] has size 3, which cannot be q*s because the known part of it is \
             0 (q = 0 as given explicitly)"
        );
    }

    #[test]
    fn explicit_dims() {
        let f = matmul();
        let b = bind_dims(&f, &[&[2, 3], &[3, 4]], &explicit(&[("k", 3)])).unwrap();
        assert_eq!(b.get(DimId(1)), Some(3));
        assert_eq!(
            err(&f, &[&[2, 3], &[3, 4]], &[("z", 1)]),
            "there is no dim named `z` in fn matmul; its dims are m, k, n"
        );
        assert_eq!(err(&f, &[&[2, 3], &[3, 4]], &[("k", 5)]), "dim k is 5 as given explicitly but 3 from A (axis 1)");
        assert_eq!(
            err(&f, &[&[2, 3], &[3, 4]], &[("k", 3), ("k", 4)]),
            "dim k is given explicitly twice, as 3 and as 4"
        );
        let g = Builder::new("iota").output("O", "n").stmt("O[i] = i").build();
        let b = bind_dims(&g, &[], &explicit(&[("n", 5)])).unwrap();
        assert_eq!(output_shapes(&g, &b).unwrap(), vec![vec![5]]);
    }

    #[test]
    fn dims_only_an_output_needs() {
        let f = Builder::new("bc").input("a", "m").output("O", "m, n").stmt("O[i, j] = a[i]").build();
        assert_eq!(err(&f, &[&[2]], &[]), "dim n is not determined by the inputs; give it explicitly, e.g. --dim n=4");
        let b = bind_dims(&f, &[&[2]], &explicit(&[("n", 4)])).unwrap();
        assert_eq!(output_shapes(&f, &b).unwrap(), vec![vec![2, 4]]);
    }

    #[test]
    fn overflow_is_an_error() {
        let f =
            Builder::new("cube").input("a", "n").output("O", "n*n*n").stmt("O[(i, j, k)] = a[i] * a[j] * a[k]").build();
        assert_eq!(
            err(&f, &[&[1 << 22]], &[]),
            "axis 0 of O: f32[n*n*n] (n*n*n with n = 4194304) is too large: it overflows 64-bit arithmetic"
        );
        let f = flat("q*s");
        assert_eq!(
            err(&f, &[&[5]], &[("q", 1 << 40), ("s", 1 << 40)]),
            "the size q*s of axis 0 of input x: f32[q*s] (q = 1099511627776 as given explicitly, \
             s = 1099511627776 as given explicitly) is too large: it overflows 64-bit arithmetic"
        );
    }

    #[test]
    fn exact_roots() {
        assert_eq!(exact_root(0, 3), Some(0));
        assert_eq!(exact_root(1, 5), Some(1));
        assert_eq!(exact_root(27, 3), Some(3));
        assert_eq!(exact_root(28, 3), None);
        assert_eq!(exact_root(u64::MAX, 2), None);
        assert_eq!(exact_root(1 << 62, 2), Some(1 << 31));
    }
}
