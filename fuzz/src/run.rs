//! The differential check of one program: every stage through the public API under
//! `catch_unwind`, then every function on every backend, in f32 and f64, on seeded
//! random inputs at small sizes, against the reference evaluator.

use crate::rng::Rng;
use ndarray::{ArrayD, Dimension, IxDyn};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tessera::{Backend, CallOptions, DType, Error, Module};
use tessera_compiler::tir;

/// The sizes every dim is drawn from.
pub const SIZES: [u64; 5] = [1, 2, 3, 5, 9];

/// How much one function may cost to run everywhere.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sum over statements of the iteration-space size (all of a statement's indices).
    pub max_work: u64,
    /// Cap on any intermediate or output (a documented refusal beyond it).
    pub memory_limit: u64,
    /// Run every function in both dtypes; otherwise in one, drawn from the seed.
    pub both_dtypes: bool,
}

impl Limits {
    /// For the debug-profile test: small spaces, since our crates are not optimised there.
    pub fn debug() -> Limits {
        Limits { max_work: 20_000, memory_limit: 64 << 20, both_dtypes: false }
    }

    pub fn release() -> Limits {
        Limits { max_work: 400_000, memory_limit: 256 << 20, both_dtypes: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A stage panicked.
    Panic,
    /// A stage returned the "this is a bug" error.
    Internal,
    /// A backend's result differs from the reference evaluator's.
    Mismatch,
    /// One backend refused a call that another ran (other than a memory limit).
    ErrorDisagree,
    /// The printed AST does not parse back to the same text.
    RoundTrip,
    /// The process died (a fault in generated code); long mode only.
    Crash,
    /// A program ran for too long; long mode only.
    Hang,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Panic => "panic",
            Kind::Internal => "internal",
            Kind::Mismatch => "mismatch",
            Kind::ErrorDisagree => "error-disagree",
            Kind::RoundTrip => "round-trip",
            Kind::Crash => "crash",
            Kind::Hang => "hang",
        }
    }
}

/// What a check found wrong.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: Kind,
    /// `parse`, `check`, `tir`, `plan`, `loops`, `clif`, `call:cranelift`, ...
    pub stage: String,
    pub detail: String,
    pub params: Option<Params>,
}

impl Finding {
    /// Two findings are the same bug for minimisation when kind and stage agree.
    pub fn same_as(&self, other: &Finding) -> bool {
        self.kind == other.kind && self.stage == other.stage
    }
}

/// How one function was run: everything needed to replay it.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub function: String,
    pub dtype: DType,
    pub dims: Vec<(String, u64)>,
    pub input_seed: u64,
}

/// The result of checking one program.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub parsed: bool,
    pub checked: bool,
    /// (function, dtype) pairs that ran on every backend and were compared.
    pub executed: usize,
    /// Functions skipped because their iteration space is over the limit at size 1.
    pub too_large: usize,
    pub findings: Vec<Finding>,
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
/// How many [`guard`]s are running; panics are expected (and recorded quietly) only then.
static GUARDS: AtomicUsize = AtomicUsize::new(0);

/// Installs a panic hook that records the message of a panic inside a [`guard`] instead
/// of printing it, so that a run is not flooded by panics it catches; other panics (a
/// failing assertion in a test) print as usual.
pub fn install_quiet_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if GUARDS.load(Ordering::SeqCst) == 0 {
            default(info);
        } else if let Ok(mut p) = LAST_PANIC.lock() {
            *p = Some(info.to_string());
        }
    }));
}

/// Runs `f`, turning a panic into a finding of `stage`.
fn guard<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, Finding> {
    let start = std::time::Instant::now();
    GUARDS.fetch_add(1, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDS.fetch_sub(1, Ordering::SeqCst);
    if std::env::var_os("TESSERA_FUZZ_TIMING").is_some() {
        eprintln!("  {stage}: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    r.map_err(|payload| {
        let msg = LAST_PANIC.lock().ok().and_then(|mut p| p.take()).unwrap_or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into())
        });
        Finding { kind: Kind::Panic, stage: stage.into(), detail: msg, params: None }
    })
}

fn internal(stage: &str, e: &Error, params: Option<&Params>) -> Option<Finding> {
    matches!(e, Error::Internal(_)).then(|| Finding {
        kind: Kind::Internal,
        stage: stage.into(),
        detail: e.to_string(),
        params: params.cloned(),
    })
}

/// How a program's functions are run: chosen from a seed, or fixed (for replays and
/// minimisation).
#[derive(Clone, Debug)]
pub enum Choice {
    Seeded(u64),
    Fixed(Vec<Params>),
}

/// Checks one program: stages, then every function on every backend.
pub fn check_program(text: &str, choice: &Choice, limits: &Limits) -> Outcome {
    let mut out = Outcome::default();
    match guard("parse", || tessera_compiler::syntax::parse(text, Default::default())) {
        Err(f) => {
            out.findings.push(f);
            return out;
        }
        Ok(Ok(m)) => {
            out.parsed = true;
            if let Some(f) = round_trip(&m) {
                out.findings.push(f);
            }
        }
        Ok(Err(_)) => {}
    }
    let module = match guard("check", || Module::from_source(text)) {
        Err(f) => {
            out.findings.push(f);
            return out;
        }
        Ok(Err(e)) => {
            if let Err(f) = guard("render", || e.render(false)) {
                out.findings.push(f);
            }
            if let Some(f) = internal("check", &e, None) {
                out.findings.push(f);
            }
            return out;
        }
        Ok(Ok(m)) => m,
    };
    out.checked = true;
    if let Err(f) = guard("ast", || (module.emit_ast(), module.render_warnings(false))) {
        out.findings.push(f);
    }
    let names: Vec<String> = module.function_names().iter().map(|s| s.to_string()).collect();
    let mut rng = Rng::new(match choice {
        Choice::Seeded(s) => *s,
        Choice::Fixed(_) => 0,
    });
    for name in names {
        let params: Vec<Params> = match choice {
            Choice::Seeded(_) => {
                let Ok(f) = module.function(&name) else { continue };
                let Some(dims) = choose_dims(f.tir(), &mut rng, limits) else {
                    out.too_large += 1;
                    continue;
                };
                let input_seed = rng.fork();
                // Both dtypes at the same sizes and inputs (f32 inputs are exact in f64),
                // or one of them when time is short: planning dominates a debug build.
                let dtypes = if limits.both_dtypes {
                    vec![DType::F32, DType::F64]
                } else {
                    vec![if rng.one_in(2) { DType::F32 } else { DType::F64 }]
                };
                dtypes
                    .into_iter()
                    .map(|dtype| Params { function: name.clone(), dtype, dims: dims.clone(), input_seed })
                    .collect()
            }
            Choice::Fixed(ps) => ps.iter().filter(|p| p.function == name).cloned().collect(),
        };
        for p in params {
            let before = out.findings.len();
            if check_function(&module, &p, limits, &mut out.findings) {
                out.executed += 1;
            }
            for f in &mut out.findings[before..] {
                f.params.get_or_insert_with(|| p.clone());
            }
        }
    }
    out
}

fn round_trip(m: &tessera_compiler::syntax::ast::Module) -> Option<Finding> {
    let r = guard("print", || {
        let printed = tessera_compiler::syntax::print_module(m);
        match tessera_compiler::syntax::parse(&printed, Default::default()) {
            Ok(m2) => {
                let again = tessera_compiler::syntax::print_module(&m2);
                (again != printed).then(|| format!("printed:\n{printed}\nreprinted:\n{again}"))
            }
            Err(d) => Some(format!("the printed AST does not parse ({}):\n{printed}", d.message)),
        }
    });
    match r {
        Err(f) => Some(f),
        Ok(Some(detail)) => Some(Finding { kind: Kind::RoundTrip, stage: "print".into(), detail, params: None }),
        Ok(None) => None,
    }
}

/// The iteration-space size of every statement at these sizes, summed (`None` on overflow).
fn work(f: &tir::Function, b: &tir::Bindings) -> Option<u64> {
    let mut total: u64 = 0;
    for s in &f.stmts {
        let mut w: u64 = 1;
        for ix in &s.indices {
            w = w.checked_mul(ix.range.eval(b).ok()?)?;
        }
        total = total.checked_add(w)?;
    }
    for &t in &f.inputs {
        let shape = f.shape(t, b).ok()?;
        total = total.checked_add(shape.iter().try_fold(1u64, |a, &x| a.checked_mul(x as u64))?)?;
    }
    Some(total)
}

/// Sizes for every dim, drawn from [`SIZES`] and shrunk (largest first) until the
/// function's work fits the limit; `None` if it does not fit even at size 1.
pub fn choose_dims(f: &tir::Function, rng: &mut Rng, limits: &Limits) -> Option<Vec<(String, u64)>> {
    let mut pick: Vec<usize> = f.dims.iter().map(|_| rng.below(SIZES.len())).collect();
    loop {
        let mut b = tir::Bindings::new(f.dims.len());
        for (k, &p) in pick.iter().enumerate() {
            b.set(tir::DimId(k as u32), SIZES[p]);
        }
        if work(f, &b).is_some_and(|w| w <= limits.max_work) {
            return Some(f.dims.iter().zip(&pick).map(|(d, &p)| (d.name.clone(), SIZES[p])).collect());
        }
        let (k, &p) = pick.iter().enumerate().max_by_key(|(_, &p)| p)?;
        if p == 0 {
            return None;
        }
        pick[k] -= 1;
    }
}

/// Seeded inputs, uniform in [-1, 1) (exact in f32), with a few exact small integers
/// now and then so that ties and exact zeros occur.
fn inputs(f: &tir::Function, b: &tir::Bindings, seed: u64) -> Option<Vec<ArrayD<f64>>> {
    let mut rng = Rng::new(seed);
    let ints = rng.one_in(6);
    f.inputs
        .iter()
        .map(|&t| {
            let shape = f.shape(t, b).ok()?;
            Some(ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                if ints {
                    rng.below(5) as f64 - 2.0
                } else {
                    (rng.unit() * 2.0 - 1.0) as f32 as f64
                }
            }))
        })
        .collect()
}

/// Index arrays for the index inputs of `f`: entries in range of the axis each selects,
/// now and then one out of range (every executor must refuse it with the same error).
fn index_inputs(f: &tir::Function, b: &tir::Bindings, seed: u64) -> Option<Vec<ArrayD<i64>>> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let extents = f.index_extents(b);
    let bad = rng.one_in(8);
    f.indices
        .iter()
        .zip(extents)
        .map(|(&t, extent)| {
            let shape = f.shape(t, b).ok()?;
            let n = extent.unwrap_or(1).max(1) as usize;
            let mut a = ArrayD::from_shape_simple_fn(IxDyn(&shape), || rng.below(n) as i64);
            if bad {
                if let Some(x) = a.iter_mut().next() {
                    *x = if rng.one_in(2) { -1 } else { n as i64 };
                }
            }
            Some(a)
        })
        .collect()
}

type Outs = Result<Vec<ArrayD<f64>>, Error>;

/// Checks every stage and backend for one function; true when it ran on every backend
/// and was compared.
fn check_function(module: &Module, p: &Params, limits: &Limits, findings: &mut Vec<Finding>) -> bool {
    let Ok(f) = module.function(&p.function) else { return false };
    let stage = |s: &str| format!("{s}:{}", p.dtype.name());
    if let Err(x) = guard("tir", || (f.emit_tir(), f.emit_graph())) {
        findings.push(x);
        return false;
    }
    // Bindings by name; dims the parameters do not mention (after minimisation) get 2.
    let t = f.tir();
    let mut b = tir::Bindings::new(t.dims.len());
    let mut dims: Vec<(&str, u64)> = Vec::new();
    for (k, d) in t.dims.iter().enumerate() {
        let v = p.dims.iter().find(|(n, _)| *n == d.name).map_or(2, |x| x.1);
        b.set(tir::DimId(k as u32), v);
        dims.push((d.name.as_str(), v));
    }
    if work(t, &b).is_none_or(|w| w > limits.max_work) {
        return false;
    }
    let opts = |backend| CallOptions {
        dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        memory_limit: limits.memory_limit,
        dtype: Some(p.dtype),
        backend,
        ..CallOptions::default()
    };
    // The text forms of the plan, the loop program and each native backend's code (the
    // compiled function is cached, so the calls below reuse it).
    for backend in Backend::native() {
        let texts = guard(&stage("compile"), || {
            f.compile_dims(&dims, &opts(backend))
                .and_then(|c| Ok((c.plan.to_string(), c.program().to_string(), c.emit_code(backend)?)))
        });
        match texts {
            Err(x) => findings.push(x),
            Ok(Err(e)) => findings.extend(internal(&stage("compile"), &e, None)),
            Ok(Ok(_)) => {}
        }
    }
    let Some(ins) = inputs(t, &b, p.input_seed) else { return false };
    let Some(idx) = index_inputs(t, &b, p.input_seed) else { return false };
    let idx: Vec<tessera::IndexView<'_>> = idx.iter().map(|a| tessera::IndexView::I64(a.view())).collect();
    let run = |backend: Backend, dtype: DType| -> Result<Outs, Finding> {
        let mut o = opts(backend);
        o.dtype = Some(dtype);
        guard(&format!("call:{}:{}", backend.name(), dtype.name()), || match dtype {
            DType::F32 => {
                let typed: Vec<ArrayD<f32>> = ins.iter().map(|a| a.mapv(|x| x as f32)).collect();
                let views: Vec<_> = typed.iter().map(|a| a.view()).collect();
                f.call_with_indices(&views, &idx, &o).map(|v| v.into_iter().map(|a| a.mapv(f64::from)).collect())
            }
            DType::F64 => {
                let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
                f.call_with_indices(&views, &idx, &o)
            }
        })
    };
    // The oracle: the reference evaluator in f64. In f32 it measures how far rounding
    // alone moves the result (the conditioning of this program on these inputs).
    let mut results: Vec<(String, Outs)> = Vec::new();
    let mut all = vec![(Backend::Reference, DType::F64), (Backend::Reference, DType::F32)];
    all.extend(Backend::executors().into_iter().map(|b| (b, p.dtype)));
    // The oracle again on inputs moved by a few f32 ulps: where that moves the result
    // a lot, the program is ill-conditioned there (e.g. a division by a sum that cancels)
    // and rounding differences are not bugs.
    let mut prng = Rng::new(p.input_seed ^ 0xA5A5);
    let moved: Vec<ArrayD<f64>> = ins.iter().map(|a| a.mapv(|x| x * (1.0 + 1e-6 * (prng.unit() * 2.0 - 1.0)))).collect();
    let perturbed = guard("call:reference:f64", || {
        let views: Vec<_> = moved.iter().map(|a| a.view()).collect();
        let mut o = opts(Backend::Reference);
        o.dtype = Some(DType::F64);
        f.call_with_indices(&views, &idx, &o)
    });
    for (backend, dtype) in all {
        let name = format!("{}:{}", backend.name(), dtype.name());
        match run(backend, dtype) {
            Err(x) => {
                findings.push(x);
                return false;
            }
            Ok(r) => {
                if let Err(e) = &r {
                    findings.extend(internal(&format!("call:{name}"), e, None));
                }
                results.push((name, r));
            }
        }
    }
    if let Ok(Ok(moved)) = perturbed {
        results.push(("reference:f64-perturbed".into(), Ok(moved)));
    }
    let wide: Vec<ArrayD<i64>> = idx
        .iter()
        .map(|x| match x {
            tessera::IndexView::I64(a) => a.to_owned(),
            tessera::IndexView::I32(a) => a.mapv(i64::from),
        })
        .collect();
    let inner = nonfinite_intermediates(t, &b, &ins, &wide, limits.memory_limit);
    compare_all(&results, p.dtype, inner, findings)
}

/// Whether the oracle meets a non-finite value in any tensor a statement defines. Sums
/// are reordered freely (the reference evaluator sums indices out early, the plan
/// factors them), which is exact only for finite values: where infinities of both signs
/// meet inside a sum, one order gives NaN and another ±inf, and a later `max=`, `min=`
/// or `select` can turn either into a finite output. A backend's non-finite value where
/// the oracle's output is finite is then no finding.
fn nonfinite_intermediates(t: &tir::Function, b: &tir::Bindings, ins: &[ArrayD<f64>], idx: &[ArrayD<i64>], memory_limit: u64) -> bool {
    let mut every = t.clone();
    every.outputs.clear();
    for s in &t.stmts {
        if !every.outputs.contains(&s.target) {
            every.outputs.push(s.target);
        }
    }
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    let opts = tessera_compiler::eval::EvalOptions { memory_limit };
    let idx: Vec<_> = idx.iter().map(|a| a.view()).collect();
    let all = catch_unwind(AssertUnwindSafe(|| tessera_compiler::eval::evaluate_indexed(&every, b, &views, &idx, &opts)));
    matches!(all, Ok(Ok(outs)) if outs.iter().any(|a| a.iter().any(|v| !v.is_finite())))
}

/// Memory limits are documented refusals: a backend may hit one where another does not.
fn refusal(e: &Error) -> bool {
    matches!(e, Error::Memory(_) | Error::Eval(tessera::EvalError::MemoryLimit { .. }))
}

fn compare_all(results: &[(String, Outs)], dtype: DType, inner_nonfinite: bool, findings: &mut Vec<Finding>) -> bool {
    let (oracle_name, oracle) = &results[0];
    let want = match oracle {
        Ok(w) => w,
        Err(e) => {
            // Everyone must refuse too (or hit a memory limit).
            for (name, r) in &results[1..] {
                if r.is_ok() && !refusal(e) {
                    findings.push(disagree(name, "runs", oracle_name, &e.to_string()));
                }
            }
            return false;
        }
    };
    let ref32 = results.iter().find(|(n, _)| n == "reference:f32").and_then(|(_, r)| r.as_ref().ok());
    let moved = results.iter().find(|(n, _)| n == "reference:f64-perturbed").and_then(|(_, r)| r.as_ref().ok());
    // How far f32 rounding, or inputs moved by a few f32 ulps, move each output.
    // A finite output that turns non-finite under that change (a square root of a sum
    // that cancels to zero, pushed below it) is ill-conditioned without bound.
    let spread = |other: Option<&Vec<ArrayD<f64>>>, k: usize, w: &ArrayD<f64>| match other.and_then(|r| r.get(k)) {
        Some(r) if r.shape() == w.shape() => w.iter().zip(r.iter()).filter(|(a, _)| a.is_finite()).fold(0.0f64, |m, (a, b)| {
            if b.is_finite() {
                m.max((a - b).abs())
            } else {
                f64::INFINITY
            }
        }),
        _ => 0.0,
    };
    let noise: Vec<f64> =
        want.iter().enumerate().map(|(k, w)| spread(ref32, k, w).max(spread(moved, k, w))).collect();
    let mut compared = true;
    for (name, r) in &results[1..] {
        match r {
            Err(e) if refusal(e) => compared = false,
            Err(e) => {
                findings.push(disagree(name, &format!("fails: {e}"), oracle_name, "runs"));
                compared = false;
            }
            // These only measure conditioning; they are not held to a tolerance.
            Ok(_) if name == "reference:f32" || name == "reference:f64-perturbed" => {}
            Ok(got) => {
                if let Some(msg) = compare(want, got, &noise, ref32, dtype, inner_nonfinite) {
                    findings.push(Finding {
                        kind: Kind::Mismatch,
                        stage: format!("call:{name}"),
                        detail: msg,
                        params: None,
                    });
                }
            }
        }
    }
    compared
}

fn disagree(name: &str, what: &str, other: &str, other_what: &str) -> Finding {
    Finding {
        kind: Kind::ErrorDisagree,
        stage: format!("call:{name}"),
        detail: format!("{name} {what}, but {other} {other_what}"),
        params: None,
    }
}

/// Compares a backend's outputs with the oracle's. Tolerance: relative to the output's
/// largest finite magnitude (at least 1), widened to a multiple of how far f32
/// rounding alone moves the result. Where the oracle is NaN or infinite anything goes
/// (reassociation turns inf into NaN, and the algebra pass folds `0·x` to 0 assuming x
/// finite); where it is finite the backend must be finite too, unless f32 itself
/// overflows there, the oracle met non-finite intermediates (`inner_nonfinite`; see
/// [`nonfinite_intermediates`]), or perturbing the inputs makes the output non-finite.
fn compare(
    want: &[ArrayD<f64>],
    got: &[ArrayD<f64>],
    noise: &[f64],
    ref32: Option<&Vec<ArrayD<f64>>>,
    dtype: DType,
    inner_nonfinite: bool,
) -> Option<String> {
    if want.len() != got.len() {
        return Some(format!("{} outputs, but the oracle has {}", got.len(), want.len()));
    }
    for (k, (w, g)) in want.iter().zip(got).enumerate() {
        if w.shape() != g.shape() {
            return Some(format!("output {k} has shape {:?}, but the oracle's is {:?}", g.shape(), w.shape()));
        }
        let scale = w.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
        let tol = match dtype {
            DType::F32 => (2e-4 * scale).max(30.0 * noise[k]),
            // f64 rounds 2^29 times finer than f32, but an error that passes through a
            // square root near zero shrinks only by the root of that, 2^14.5 (a
            // centred sum under `sqrt`). Where f32 noise is small next to the output
            // this changes nothing; where it is large the output is ill-conditioned.
            // Where even that difference is a thousandth of the output, the output is
            // rounding noise (a cancelling sum under a large scale, which f32 may
            // happen to cancel exactly): no f64 result is more right than another there.
            DType::F64 if noise[k] >= 1e-3 * scale => 30.0 * noise[k],
            DType::F64 => (1e-9 * scale).max(30.0 * noise[k] * 4.4e-5),
        };
        let r32 = ref32.and_then(|r| r.get(k));
        for ((ix, a), c) in w.indexed_iter().zip(g.iter()) {
            let a = *a;
            if !a.is_finite() || a == *c {
                continue;
            }
            let f32_overflows = dtype == DType::F32 && (a.abs() > 1e37 || r32.and_then(|r| r.get(ix.clone())).is_some_and(|v| !v.is_finite()));
            if !c.is_finite() {
                // An output that few-ulp input changes make non-finite (noise is infinite:
                // a square root of a cancelling sum) may come out non-finite here too.
                if f32_overflows || inner_nonfinite || noise[k].is_infinite() || (dtype == DType::F64 && a.abs() > 1e300) {
                    continue;
                }
            } else if (a - c).abs() <= tol {
                continue;
            }
            return Some(format!(
                "output {k} at {:?} is {c}, but the reference evaluator (f64) says {a} (tolerance {tol:.3e})",
                ix.slice()
            ));
        }
    }
    None
}

/// Renders params as a header: `# dtype: f32`, `# dims: n=9 d=9`, `# seed: 12`.
pub fn params_header(p: &Params) -> String {
    let dims: Vec<String> = p.dims.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("# fn: {}\n# dtype: {}\n# dims: {}\n# seed: {}\n", p.function, p.dtype.name(), dims.join(" "), p.input_seed)
}

/// Reads the params of a case file's header (see [`params_header`]).
pub fn parse_header(text: &str) -> Option<Params> {
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some((k, v)) = line.trim_start_matches('#').trim().split_once(':') {
            fields.insert(k.trim(), v.trim());
        }
    }
    let dtype = match *fields.get("dtype")? {
        "f32" => DType::F32,
        "f64" => DType::F64,
        _ => return None,
    };
    let dims = fields
        .get("dims")?
        .split_whitespace()
        .map(|d| d.split_once('=').and_then(|(n, v)| Some((n.to_string(), v.parse().ok()?))))
        .collect::<Option<Vec<_>>>()?;
    Some(Params { function: fields.get("fn")?.to_string(), dtype, dims, input_seed: fields.get("seed")?.parse().ok()? })
}
