//! Test helpers: a concise builder of TIR functions from statement text, a brute-force
//! evaluator (one scalar loop per statement, the semantics spelled out), and a small
//! deterministic random number generator.
//!
//! The statement syntax is a subset of `.tsr`: `C[i, j] = A[i, l] * B[l, j]`, `max=`,
//! grouped positions `(i, k)`, inline `sum[j](e)`, builtins, `select(j <= i, a, b)`,
//! dims and indices as values. Index ranges come from the positions they index.

use crate::tir::*;
use ndarray::{ArrayD, IxDyn};
use tessera_runtime::DType;

pub(crate) struct Builder {
    f: Function,
}

fn parse_size(f: &mut Function, text: &str) -> (Size, Vec<Size>) {
    let mut factors = Vec::new();
    for part in text.split('*').map(str::trim) {
        let s = match part.parse::<u64>() {
            Ok(n) => Size::lit(n),
            Err(_) => {
                let d = match f.dim_by_name(part) {
                    Some(d) => d,
                    None => {
                        f.dims.push(Dim { name: part.to_string(), span: Default::default() });
                        DimId(f.dims.len() as u32 - 1)
                    }
                };
                Size::dim(d)
            }
        };
        factors.push(s);
    }
    let size = factors.iter().fold(Size::one(), |acc, s| acc.mul(s).expect("size overflow in a test shape"));
    (size, factors)
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder {
            f: Function {
                constants: Vec::new(),
                name: name.to_string(),
                dtype: DType::F32,
                dims: Vec::new(),
                tensors: Vec::new(),
                inputs: Vec::new(),
                indices: Vec::new(),
                outputs: Vec::new(),
                stmts: Vec::new(),
                span: Default::default(),
            },
        }
    }

    pub fn dtype(mut self, d: DType) -> Builder {
        self.f.dtype = d;
        self
    }

    fn tensor(mut self, name: &str, shape: &str, kind: TensorKind) -> Builder {
        let mut sizes = Vec::new();
        let mut factors = Vec::new();
        for part in shape.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (s, fs) = parse_size(&mut self.f, part);
            sizes.push(s);
            factors.push(fs);
        }
        self.f.tensors.push(TensorDecl {
            name: name.to_string(),
            kind,
            shape: sizes,
            factors,
            span: Default::default(),
        });
        let id = TensorId(self.f.tensors.len() as u32 - 1);
        match kind {
            TensorKind::Input => self.f.inputs.push(id),
            TensorKind::Output => self.f.outputs.push(id),
            TensorKind::Index(_) => self.f.indices.push(id),
            TensorKind::Temp | TensorKind::Const => {}
        }
        self
    }

    /// `shape` is a comma-separated list of sizes such as `m, q*s, 3`; empty for a scalar.
    pub fn input(self, name: &str, shape: &str) -> Builder {
        self.tensor(name, shape, TensorKind::Input)
    }

    pub fn output(self, name: &str, shape: &str) -> Builder {
        self.tensor(name, shape, TensorKind::Output)
    }

    pub fn temp(self, name: &str, shape: &str) -> Builder {
        self.tensor(name, shape, TensorKind::Temp)
    }

    pub fn stmt(mut self, text: &str) -> Builder {
        let s = StmtParser::new(&self.f, text).stmt();
        self.f.stmts.push(s);
        self
    }

    /// The function, checked by `tir::verify`.
    pub fn build(self) -> Function {
        if let Err(e) = verify(&self.f) {
            panic!("test function does not verify: {e}\n{}", self.f);
        }
        self.f
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Sym(&'static str),
}

fn lex(text: &str) -> Vec<Tok> {
    const SYMS: [&str; 19] =
        ["<=", ">=", "==", "!=", "&&", "||", "[", "]", "(", ")", ",", "+", "-", "*", "/", "=", "<", ">", "!"];
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut k = 0;
    while k < b.len() {
        let c = b[k] as char;
        if c.is_whitespace() {
            k += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = k;
            while k < b.len() && ((b[k] as char).is_ascii_alphanumeric() || b[k] == b'_') {
                k += 1;
            }
            out.push(Tok::Ident(text[start..k].to_string()));
        } else if c.is_ascii_digit() {
            let start = k;
            while k < b.len() && ((b[k] as char).is_ascii_digit() || b[k] == b'.') {
                k += 1;
            }
            if k < b.len() && b[k] == b'e' {
                k += 1;
                if k < b.len() && b[k] == b'-' {
                    k += 1;
                }
                while k < b.len() && (b[k] as char).is_ascii_digit() {
                    k += 1;
                }
            }
            out.push(Tok::Num(text[start..k].parse().expect("bad number")));
        } else {
            let sym = SYMS.iter().find(|s| text[k..].starts_with(**s)).unwrap_or_else(|| panic!("bad char {c}"));
            out.push(Tok::Sym(sym));
            k += sym.len();
        }
    }
    out
}

struct StmtParser<'f> {
    f: &'f Function,
    toks: Vec<Tok>,
    pos: usize,
    indices: Vec<(String, Option<Size>)>,
}

impl<'f> StmtParser<'f> {
    fn new(f: &'f Function, text: &str) -> StmtParser<'f> {
        StmtParser { f, toks: lex(text), pos: 0, indices: Vec::new() }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.peek_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) {
        assert!(self.eat(s), "expected `{s}` at token {} ({:?})", self.pos, self.peek());
    }

    fn ident(&mut self) -> String {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Ident(n)) => {
                self.pos += 1;
                n
            }
            t => panic!("expected a name, found {t:?}"),
        }
    }

    fn idx(&mut self, name: &str) -> IndexId {
        let k = match self.indices.iter().position(|(n, _)| n == name) {
            Some(k) => k,
            None => {
                self.indices.push((name.to_string(), None));
                self.indices.len() - 1
            }
        };
        IndexId(k as u32)
    }

    fn positions(&mut self, t: TensorId) -> Vec<Position> {
        let mut out = Vec::new();
        self.expect("[");
        loop {
            let group = if self.eat("(") {
                let mut g = vec![self.ident()];
                while self.eat(",") {
                    g.push(self.ident());
                }
                self.expect(")");
                g
            } else {
                vec![self.ident()]
            };
            let p = out.len();
            let decl = self.f.tensor(t);
            let ids: Vec<IndexId> = group.iter().map(|n| self.idx(n)).collect();
            // A range comes from the position's size, or from its factors for a group.
            let sizes: Option<Vec<Size>> = if ids.len() == 1 {
                decl.shape.get(p).map(|s| vec![s.clone()])
            } else {
                decl.factors.get(p).filter(|fs| fs.len() == ids.len()).cloned()
            };
            if let Some(sizes) = sizes {
                for (i, s) in ids.iter().zip(sizes) {
                    let slot = &mut self.indices[i.index()].1;
                    if slot.is_none() {
                        *slot = Some(s);
                    }
                }
            }
            out.push(ids);
            if !self.eat(",") {
                break;
            }
        }
        self.expect("]");
        out
    }

    fn stmt(mut self) -> Stmt {
        let name = self.ident();
        let target = self.f.tensor_by_name(&name).unwrap_or_else(|| panic!("no tensor {name}"));
        let lhs = if self.peek_sym("[") { self.positions(target) } else { Vec::new() };
        let op = match self.peek() {
            Some(Tok::Ident(n)) if n == "max" => ReduceOp::Max,
            Some(Tok::Ident(n)) if n == "min" => ReduceOp::Min,
            _ => ReduceOp::Sum,
        };
        if op != ReduceOp::Sum {
            self.pos += 1;
        }
        self.expect("=");
        let rhs = self.expr();
        assert!(self.pos == self.toks.len(), "trailing tokens in statement");
        let lhs_ids: Vec<IndexId> = lhs.iter().flatten().copied().collect();
        let mut free = Vec::new();
        rhs.free_indices(&mut free);
        let reduced = free.into_iter().filter(|i| !lhs_ids.contains(i)).collect();
        let indices = self
            .indices
            .into_iter()
            .map(|(name, r)| {
                let range = r.unwrap_or_else(|| panic!("cannot infer the range of index {name}"));
                IndexVar { name, range }
            })
            .collect();
        Stmt { target, lhs, op, reduced, indices, rhs, span: Default::default() }
    }

    fn expr(&mut self) -> Expr {
        let mut terms = vec![self.term()];
        loop {
            if self.eat("+") {
                terms.push(self.term());
            } else if self.eat("-") {
                let a = chain(std::mem::take(&mut terms), Expr::Add);
                terms.push(Expr::Sub(Box::new(a), Box::new(self.term())));
            } else {
                return chain(terms, Expr::Add);
            }
        }
    }

    fn term(&mut self) -> Expr {
        let mut factors = vec![self.unary()];
        loop {
            if self.eat("*") {
                factors.push(self.unary());
            } else if self.eat("/") {
                let a = chain(std::mem::take(&mut factors), Expr::Mul);
                factors.push(Expr::Div(Box::new(a), Box::new(self.unary())));
            } else {
                return chain(factors, Expr::Mul);
            }
        }
    }

    fn unary(&mut self) -> Expr {
        if self.eat("-") {
            return match self.unary() {
                Expr::Lit(v) => Expr::Lit(-v),
                e => Expr::Neg(Box::new(e)),
            };
        }
        self.atom()
    }

    fn atom(&mut self) -> Expr {
        if self.eat("(") {
            let e = self.expr();
            self.expect(")");
            return e;
        }
        if let Some(Tok::Num(v)) = self.peek().cloned() {
            self.pos += 1;
            return Expr::Lit(v);
        }
        let name = self.ident();
        let reduce_op = match name.as_str() {
            "sum" => Some(ReduceOp::Sum),
            "max" => Some(ReduceOp::Max),
            "min" => Some(ReduceOp::Min),
            _ => None,
        };
        if let (Some(op), true) = (reduce_op, self.peek_sym("[")) {
            self.expect("[");
            let mut ids = vec![self.ident()];
            while self.eat(",") {
                ids.push(self.ident());
            }
            self.expect("]");
            let ids: Vec<IndexId> = ids.iter().map(|n| self.idx(n)).collect();
            self.expect("(");
            let body = self.expr();
            self.expect(")");
            return Expr::Reduce(op, ids, Box::new(body));
        }
        if self.peek_sym("(") {
            self.expect("(");
            if name == "select" {
                let c = self.cond();
                self.expect(",");
                let a = self.expr();
                self.expect(",");
                let b = self.expr();
                self.expect(")");
                return Expr::Select(Box::new(c), Box::new(a), Box::new(b));
            }
            let b = Builtin::from_name(&name).unwrap_or_else(|| panic!("no builtin {name}"));
            let mut args = vec![self.expr()];
            while self.eat(",") {
                args.push(self.expr());
            }
            self.expect(")");
            return Expr::Call(b, args);
        }
        if name == "inf" {
            return Expr::Lit(f64::INFINITY);
        }
        if let Some(t) = self.f.tensor_by_name(&name) {
            let pos = if self.peek_sym("[") { self.positions(t) } else { Vec::new() };
            return Expr::Access(t, pos);
        }
        if let Some(d) = self.f.dim_by_name(&name) {
            return Expr::Size(Size::dim(d));
        }
        Expr::Index(self.idx(&name))
    }

    fn cond(&mut self) -> Cond {
        let mut ors = vec![self.cond_and()];
        while self.eat("||") {
            ors.push(self.cond_and());
        }
        if ors.len() == 1 {
            ors.remove(0)
        } else {
            Cond::Or(ors)
        }
    }

    fn cond_and(&mut self) -> Cond {
        let mut ands = vec![self.cond_atom()];
        while self.eat("&&") {
            ands.push(self.cond_atom());
        }
        if ands.len() == 1 {
            ands.remove(0)
        } else {
            Cond::And(ands)
        }
    }

    fn cond_atom(&mut self) -> Cond {
        if self.eat("!") {
            self.expect("(");
            let c = self.cond();
            self.expect(")");
            return Cond::Not(Box::new(c));
        }
        let a = self.expr();
        let op = [
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .into_iter()
        .find(|(s, _)| self.eat(s))
        .map(|(_, op)| op)
        .expect("expected a comparison");
        let b = self.expr();
        Cond::Cmp(op, a, b)
    }
}

fn chain(mut xs: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if xs.len() == 1 {
        xs.remove(0)
    } else {
        make(xs)
    }
}

/// Every assignment of values below `ranges`, row-major, as a callback.
fn odometer(ranges: &[usize], mut f: impl FnMut(&[usize])) {
    if ranges.contains(&0) {
        return;
    }
    let mut v = vec![0; ranges.len()];
    loop {
        f(&v);
        let mut k = ranges.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            v[k] += 1;
            if v[k] < ranges[k] {
                break;
            }
            v[k] = 0;
        }
    }
}

/// Evaluates `f` one scalar at a time, in f64: the obviously right (and slow) semantics.
pub(crate) fn naive(f: &Function, b: &Bindings, inputs: &[ArrayD<f64>]) -> Vec<ArrayD<f64>> {
    let mut store: Vec<Option<ArrayD<f64>>> = vec![None; f.tensors.len()];
    for (&t, x) in f.inputs.iter().zip(inputs) {
        store[t.index()] = Some(x.clone());
    }
    for s in &f.stmts {
        let ranges: Vec<usize> = s.indices.iter().map(|v| v.range.eval(b).unwrap() as usize).collect();
        let shape = f.shape(s.target, b).unwrap();
        let mut out = ArrayD::<f64>::zeros(IxDyn(&shape));
        let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
        let lhs_ranges: Vec<usize> = lhs.iter().map(|i| ranges[i.index()]).collect();
        let ev = Naive { b, store: &store, ranges: &ranges };
        odometer(&lhs_ranges, |vals| {
            let mut env = vec![None; ranges.len()];
            for (i, &v) in lhs.iter().zip(vals) {
                env[i.index()] = Some(v);
            }
            let value = ev.reduce(s.op, &s.reduced, &s.rhs, &mut env);
            let at = ev.offsets(&s.lhs, &env);
            out[IxDyn(&at)] = value;
        });
        store[s.target.index()] = Some(out);
    }
    f.outputs.iter().map(|o| store[o.index()].clone().unwrap()).collect()
}

struct Naive<'a> {
    b: &'a Bindings,
    store: &'a [Option<ArrayD<f64>>],
    ranges: &'a [usize],
}

impl Naive<'_> {
    fn offsets(&self, pos: &[Position], env: &[Option<usize>]) -> Vec<usize> {
        pos.iter().map(|p| p.iter().fold(0, |acc, i| acc * self.ranges[i.index()] + env[i.index()].unwrap())).collect()
    }

    fn reduce(&self, op: ReduceOp, ids: &[IndexId], e: &Expr, env: &mut Vec<Option<usize>>) -> f64 {
        let rs: Vec<usize> = ids.iter().map(|i| self.ranges[i.index()]).collect();
        let mut acc = match op {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
        };
        let saved: Vec<Option<usize>> = ids.iter().map(|i| env[i.index()]).collect();
        odometer(&rs, |vals| {
            for (i, &v) in ids.iter().zip(vals) {
                env[i.index()] = Some(v);
            }
            let x = self.expr(e, env);
            acc = match op {
                ReduceOp::Sum => acc + x,
                ReduceOp::Max => crate::tir::nan_max(acc, x),
                ReduceOp::Min => crate::tir::nan_min(acc, x),
            };
        });
        for (i, v) in ids.iter().zip(saved) {
            env[i.index()] = v;
        }
        acc
    }

    fn expr(&self, e: &Expr, env: &mut Vec<Option<usize>>) -> f64 {
        match e {
            Expr::Lit(v) => *v,
            Expr::Size(s) => s.eval(self.b).unwrap() as f64,
            Expr::Index(i) => env[i.index()].unwrap() as f64,
            // The generated programs this evaluates never gather (tests/gather.rs
            // checks gathers against ndarray).
            Expr::Gather(..) => panic!("the naive test evaluator runs no gathers"),
            Expr::Access(t, pos) => {
                let at = self.offsets(pos, env);
                self.store[t.index()].as_ref().unwrap()[IxDyn(&at)]
            }
            Expr::Neg(a) => -self.expr(a, env),
            Expr::Add(xs) => xs.iter().map(|x| self.expr(x, env)).sum(),
            Expr::Mul(xs) => xs.iter().map(|x| self.expr(x, env)).product(),
            Expr::Sub(a, b) => self.expr(a, env) - self.expr(b, env),
            Expr::Div(a, b) => self.expr(a, env) / self.expr(b, env),
            Expr::Call(f, xs) => {
                let a = self.expr(&xs[0], env);
                let b = xs.get(1).map_or(0.0, |x| self.expr(x, env));
                f.apply(a, b)
            }
            Expr::Select(c, a, b) => {
                if self.cond(c, env) {
                    self.expr(a, env)
                } else {
                    self.expr(b, env)
                }
            }
            Expr::Reduce(op, ids, body) => self.reduce(*op, ids, body, env),
        }
    }

    fn cond(&self, c: &Cond, env: &mut Vec<Option<usize>>) -> bool {
        match c {
            Cond::Cmp(op, a, b) => {
                let (x, y) = (self.expr(a, env), self.expr(b, env));
                op.apply(x, y)
            }
            Cond::And(cs) => cs.iter().all(|x| self.cond(x, env)),
            Cond::Or(cs) => cs.iter().any(|x| self.cond(x, env)),
            Cond::Not(x) => !self.cond(x, env),
        }
    }
}

/// A small deterministic generator (xorshift64*), so tests need no extra crate.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// 64 uniform random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn array(&mut self, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(shape), |_| self.next())
    }
}
