//! Executed slicing computes what the function computes: random einsum networks and
//! random well-typed programs (sum, max= and min= reductions) are planned under random
//! memory limits, and their slice loops run on every backend of the build, one slice at
//! a time and in parallel, against the reference evaluator and the unsliced executable.

use ndarray::{ArrayD, ArrayViewD};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use tessera_compiler::diag::FileId;
use tessera_compiler::eval::{evaluate, EvalOptions};
use tessera_compiler::exec::{Distribution, ExecError, Executable};
use tessera_compiler::pipeline;
use tessera_compiler::plan::{plan, PlanError, PlanOptions};
use tessera_compiler::tir::{bind_dims, Bindings, Function, ReduceOp, TensorKind};
use tessera_compiler::Backend;
use tessera_runtime::DType;

mod common;

/// Why cases did not run sliced, for the test's printout.
static WHY: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn note(why: &str) {
    if let Ok(mut w) = WHY.lock() {
        w.push(why.chars().take(3000).collect());
    }
}

fn close(want: &ArrayD<f64>, got: &ArrayD<f64>, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(want.shape(), got.shape(), "{}: shape", what);
    let scale = want.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
    for (k, (a, c)) in want.iter().zip(got).enumerate() {
        // As in the other differential tests: reassociation may turn one non-finite
        // value into another, and the algebra pass folds `0·x` assuming x finite.
        let ok = a == c || !a.is_finite() || (a - c).abs() <= 1e-9 * scale;
        prop_assert!(ok, "{}: element {} is {} but should be {}", what, k, c, a);
    }
    Ok(())
}

/// Largest intermediate of the unlimited plan, in bytes.
fn largest_intermediate(f: &Function, b: &Bindings) -> Result<u64, TestCaseError> {
    let p = plan(f, b, &PlanOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(p.steps
        .iter()
        .zip(&p.program.stmts)
        .filter(|(_, s)| p.program.tensor(s.target).kind == TensorKind::Temp)
        .map(|(st, _)| st.bytes)
        .max()
        .unwrap_or(0))
}

/// Plans `f` under a limit of `fraction` of its largest intermediate (or, when the
/// driver refuses that, limits between it and the largest intermediate) and runs the
/// slice loops on every executor with 1 thread and with the default pool.
fn sliced_equals_direct(f: &Function, b: &Bindings, fraction: f64) -> Result<Outcome, TestCaseError> {
    let largest = largest_intermediate(f, b)?;
    if largest < 2 * 8 {
        // Nothing to slice: an intermediate of one element always fits.
        note("nothing to slice");
        return Ok(Outcome::Skipped);
    }
    let low = ((largest as f64 * fraction) as u64).max(8);
    let mut outcome = Outcome::Skipped;
    for limit in [low, (low + largest) / 2, largest - 8] {
        match check_at(f, b, limit)? {
            Outcome::Ran => return Ok(Outcome::Ran),
            o => outcome = outcome.max(o),
        }
    }
    Ok(outcome)
}

fn count(o: Outcome, ran: &AtomicU32, refused: &AtomicU32) {
    match o {
        Outcome::Ran => ran.fetch_add(1, Ordering::Relaxed),
        Outcome::Refused => refused.fetch_add(1, Ordering::Relaxed),
        Outcome::Skipped => 0,
    };
}

/// What became of a case, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ran,
    /// Not sliced, or a plan the driver does not run.
    Skipped,
    /// The pieces needed more than the limit on every plan the planner found.
    Refused,
}

/// Whether the plan under `limit` ran sliced (and then agreed everywhere). Compiles
/// through the pipeline's sliced driver, as calls do: a plan the planner fits under the
/// limit is never refused for memory.
fn check_at(f: &Function, b: &Bindings, limit: u64) -> Result<Outcome, TestCaseError> {
    let p = match plan(f, b, &PlanOptions { memory_limit: Some(limit), ..PlanOptions::default() }) {
        Ok(p) => p,
        // The planner may find no slicing that fits; it says so, as a size error.
        Err(PlanError::Size(_)) => {
            note("the planner finds no slicing");
            return Ok(Outcome::Skipped);
        }
        Err(e) => return Err(TestCaseError::fail(format!("planning under {limit} B: {e}\n{f}"))),
    };
    if p.slices.is_empty() {
        note("no slices");
        return Ok(Outcome::Skipped);
    }
    let inputs = common::inputs(f, b, 7);
    let views: Vec<ArrayViewD<'_, f64>> = inputs.iter().map(|a| a.view()).collect();
    let want = evaluate(f, b, &views, &EvalOptions::default())
        .map_err(|e| TestCaseError::fail(format!("the oracle fails: {e}\n{f}")))?;
    let whole = pipeline::compile(f, b, DType::F64, &pipeline::Options::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .exec
        .ok_or_else(|| TestCaseError::fail("no executable"))?
        .run(&views)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut outcome = Outcome::Ran;
    for backend in Backend::executors() {
        for threads in [1, 0] {
            let what = format!("{} on {} thread(s) under {limit} B\n{f}\n{p}", backend.name(), threads);
            let r = tessera_runtime::with_threads(threads, || -> Result<Result<Vec<ArrayD<f64>>, Outcome>, TestCaseError> {
                let exe = match pipeline::compile_sliced(f, b, DType::F64, backend, limit, 1, &PlanOptions::default()) {
                    Ok(Some(pipeline::Output { exec: Some(e), .. })) => e,
                    // Plans the driver cannot run exactly are refused with a reason.
                    Err(pipeline::PipelineError::Exec(ExecError::Unavailable(m))) if m.contains("slice loops") => {
                        note(&format!("{m}\n{what}"));
                        return Ok(Err(Outcome::Skipped));
                    }
                    // So are limits that the pieces overshoot on every plan the planner
                    // finds (counted: the test fails when they are more than rare).
                    Err(pipeline::PipelineError::Exec(e @ ExecError::OverLimit { .. })) => {
                        note(&format!("{e}\n{what}"));
                        return Ok(Err(Outcome::Refused));
                    }
                    // And slicings that would recompute most of the work.
                    Err(pipeline::PipelineError::Exec(e @ ExecError::Memory(_))) if e.to_string().contains("sensible cost") => {
                        note(&format!("{e}\n{what}"));
                        return Ok(Err(Outcome::Refused));
                    }
                    Ok(_) => return Err(TestCaseError::fail(format!("no sliced executable\n{what}"))),
                    Err(e) => return Err(TestCaseError::fail(format!("{e}\n{what}"))),
                };
                let info = exe.slicing().ok_or_else(|| TestCaseError::fail("not sliced"))?;
                // Intermediates stay within the limit; inputs and outputs come on top.
                prop_assert!(
                    info.temp_bytes as u64 <= limit,
                    "{} bytes of intermediates over the limit ({:?})\n{}",
                    info.temp_bytes,
                    info,
                    what
                );
                prop_assert!(info.slices >= 2, "{:?}", info);
                exe.run(&views).map(Ok).map_err(|e| TestCaseError::fail(format!("{e}\n{what}")))
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))??;
            let got = match r {
                Ok(got) => got,
                Err(o) => {
                    outcome = outcome.max(o);
                    continue;
                }
            };
            prop_assert_eq!(got.len(), want.len());
            for ((w, g), u) in want.iter().zip(&got).zip(&whole) {
                close(w, g, &format!("oracle vs sliced, {what}"))?;
                close(u, g, &format!("unsliced vs sliced, {what}"))?;
            }
        }
    }
    Ok(outcome)
}

fn checked(src: &str) -> Result<Function, TestCaseError> {
    let (_, _, c) = pipeline::check("p.tsr", src);
    c.functions.into_iter().next().ok_or_else(|| TestCaseError::fail(format!("does not check:\n{src}")))
}

/// Random tensor networks: 3 to 5 tensors of rank 3 over labels `a..f` of sizes 3..8, with at most one output label, so that pairwise intermediates (rank 4 and up)
/// outgrow the inputs and a memory limit cuts them, not the outputs.
fn network() -> impl Strategy<Value = (String, Vec<Vec<usize>>)> {
    let term = prop::sample::subsequence((0usize..6).collect::<Vec<_>>(), 3).prop_shuffle();
    (prop::collection::vec(term, 3..6), prop::collection::vec(3usize..9, 6), prop::option::of(0usize..6)).prop_map(
        |(terms, sizes, out)| {
            let labels: Vec<char> = "abcdef".chars().collect();
            let ins: Vec<String> = terms.iter().map(|t| t.iter().map(|&l| labels[l]).collect()).collect();
            let out: String =
                out.filter(|o| terms.iter().any(|t| t.contains(o))).map(|o| labels[o].to_string()).unwrap_or_default();
            let shapes = terms.iter().map(|t| t.iter().map(|&l| sizes[l]).collect()).collect();
            (format!("{}->{out}", ins.join(",")), shapes)
        },
    )
}

#[test]
fn sliced_einsums_equal_direct() {
    let (ran, refused) = (AtomicU32::new(0), AtomicU32::new(0));
    let cases = 200;
    common::run_cases(cases, (network(), 0.25f64..0.95), |((spec, shapes), fraction)| {
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let e = tessera_compiler::einsum::translate(&spec, &refs, DType::F64, FileId(0))
            .map_err(|d| TestCaseError::fail(format!("{spec}: {}", d.message)))?;
        count(sliced_equals_direct(&e.function, &e.bindings, fraction)?, &ran, &refused);
        Ok(())
    });
    let (ran, refused) = (ran.into_inner(), refused.into_inner());
    println!("{ran} of {cases} cases ran sliced, {refused} refused for memory");
    assert!(refused * 10 <= ran, "{refused} cases refused for memory, {ran} ran");
    let mut why = WHY.lock().map(|w| w.clone()).unwrap_or_default();
    why.sort();
    let mut n = std::collections::BTreeMap::new();
    for w in &why {
        *n.entry(w.chars().take(45).collect::<String>()).or_insert(0) += 1;
    }
    println!("not run sliced: {n:#?}");
    assert!(ran >= cases / 8, "only {ran} of {cases} cases ran sliced");
}

/// Random two-statement programs: a product `T` of two inputs over most of their
/// indices, then `Y` reduced from `T · C` with `sum`, `max=` or `min=`, keeping at most
/// one index; sizes 3..9 over indices `i0..i4`.
fn reduction_program() -> impl Strategy<Value = (String, Vec<Vec<usize>>)> {
    let labels = || prop::sample::subsequence((0usize..5).collect::<Vec<_>>(), 2..4).prop_shuffle();
    (labels(), labels(), labels(), prop::collection::vec(3usize..9, 5), any::<u64>(), prop::sample::select(vec!["=", "max=", "min="]))
        .prop_map(|(la, lb, lc, sizes, bits, op)| {
            let mut ab: Vec<usize> = la.clone();
            ab.extend(lb.iter().filter(|l| !la.contains(l)));
            // T keeps all but (sometimes) one of the indices of A and B.
            let drop = (bits % 4 == 0).then(|| ab[(bits as usize / 4) % ab.len()]);
            let lt: Vec<usize> = ab.iter().copied().filter(|l| Some(*l) != drop).collect();
            let mut tc = lt.clone();
            tc.extend(lc.iter().filter(|l| !lt.contains(l)));
            let ly: Vec<usize> = if bits & 16 == 0 { vec![] } else { vec![tc[(bits as usize / 32) % tc.len()]] };
            let idx = |ls: &[usize]| ls.iter().map(|l| format!("i{l}")).collect::<Vec<_>>().join(", ");
            let dims = |ls: &[usize]| ls.iter().map(|l| format!("n{l}")).collect::<Vec<_>>().join(", ");
            let src = format!(
                "fn f(A: f64[{}], B: f64[{}], C: f64[{}]) -> Y: f64[{}] {{\n    T[{}] = A[{}] * B[{}]\n    Y[{}] {op} T[{}] * C[{}]\n}}\n",
                dims(&la), dims(&lb), dims(&lc), dims(&ly), idx(&lt), idx(&la), idx(&lb), idx(&ly), idx(&lt), idx(&lc)
            );
            let shape = |ls: &[usize]| ls.iter().map(|&l| sizes[l]).collect::<Vec<_>>();
            (src, vec![shape(&la), shape(&lb), shape(&lc)])
        })
}

#[test]
fn sliced_reductions_equal_direct() {
    let cases = 100;
    let (ran, refused) = (AtomicU32::new(0), AtomicU32::new(0));
    common::run_cases(cases, (reduction_program(), 0.25f64..0.95), |((src, shapes), fraction)| {
        let f = checked(&src)?;
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let b = bind_dims(&f, &refs, &[]).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        count(sliced_equals_direct(&f, &b, fraction)?, &ran, &refused);
        Ok(())
    });
    let (ran, refused) = (ran.into_inner(), refused.into_inner());
    println!("{ran} of {cases} programs ran sliced, {refused} refused for memory");
    assert!(refused * 10 <= ran, "{refused} programs refused for memory, {ran} ran");
    assert!(ran >= cases / 4, "only {ran} of {cases} programs ran sliced");
}

/// Ranks as threads of this process, for testing distributed runs without MPI: each
/// collective waits for every rank at a barrier and reduces in rank order.
struct ThreadRanks {
    rank: usize,
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: std::sync::Barrier,
    data: std::sync::Mutex<Vec<Vec<f64>>>,
    failures: std::sync::Mutex<Vec<Option<String>>>,
}

impl ThreadRanks {
    fn all(size: usize) -> Vec<ThreadRanks> {
        let shared = std::sync::Arc::new(Shared {
            size,
            barrier: std::sync::Barrier::new(size),
            data: std::sync::Mutex::new(vec![Vec::new(); size]),
            failures: std::sync::Mutex::new(vec![None; size]),
        });
        (0..size).map(|rank| ThreadRanks { rank, shared: shared.clone() }).collect()
    }

    /// Every rank's data, after all have put theirs.
    fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        self.shared.data.lock().unwrap()[self.rank] = mine;
        self.shared.barrier.wait();
        let all = self.shared.data.lock().unwrap().clone();
        self.shared.barrier.wait();
        all
    }

    fn reduce(&self, data: &mut [f64], op: ReduceOp) {
        let all = self.exchange(data.to_vec());
        for (k, x) in data.iter_mut().enumerate() {
            let vals = all.iter().map(|v| v[k]);
            *x = match op {
                ReduceOp::Sum => vals.sum(),
                ReduceOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Min => vals.fold(f64::INFINITY, f64::min),
            };
        }
    }
}

impl Distribution for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn ranks(&self) -> usize {
        self.shared.size
    }
    fn agree(&self, failure: Option<String>) -> Result<(), String> {
        self.shared.failures.lock().unwrap()[self.rank] = failure;
        self.shared.barrier.wait();
        let all = self.shared.failures.lock().unwrap().clone();
        self.shared.barrier.wait();
        match all.iter().position(|f| f.is_some()) {
            None => Ok(()),
            Some(r) => Err(format!("rank {r} failed: {}", all[r].clone().unwrap_or_default())),
        }
    }
    fn allreduce_f64(&self, data: &mut [f64], op: ReduceOp) -> Result<(), String> {
        self.reduce(data, op);
        Ok(())
    }
    fn allreduce_f32(&self, data: &mut [f32], op: ReduceOp) -> Result<(), String> {
        let mut wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        self.reduce(&mut wide, op);
        data.iter_mut().zip(wide).for_each(|(x, w)| *x = w as f32);
        Ok(())
    }
    fn broadcast_f64(&self, data: &mut [f64], root: usize) -> Result<(), String> {
        let all = self.exchange(data.to_vec());
        data.copy_from_slice(&all[root]);
        Ok(())
    }
    fn broadcast_f32(&self, data: &mut [f32], root: usize) -> Result<(), String> {
        let all = self.exchange(data.iter().map(|&x| x as f64).collect());
        data.iter_mut().zip(&all[root]).for_each(|(x, &w)| *x = w as f32);
        Ok(())
    }
}

#[test]
fn distributed_slices_equal_direct() {
    let ran = AtomicU32::new(0);
    let cases = 60;
    common::run_cases(cases, (reduction_program(), 0.25f64..0.9, 2usize..4), |((src, shapes), fraction, ranks)| {
        let f = checked(&src)?;
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let b = bind_dims(&f, &refs, &[]).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let largest = largest_intermediate(&f, &b)?;
        let limit = ((largest as f64 * fraction) as u64).max(8);
        let Ok(p) = plan(&f, &b, &PlanOptions { memory_limit: Some(limit), ..PlanOptions::default() }) else { return Ok(()) };
        if p.slices.is_empty() {
            return Ok(());
        }
        let Ok(exe) = Executable::sliced_for_ranks(&p, &b, Backend::Cranelift, limit, ranks) else { return Ok(()) };
        let inputs = common::inputs(&f, &b, 11);
        let views: Vec<ArrayViewD<'_, f64>> = inputs.iter().map(|a| a.view()).collect();
        let want = evaluate(&f, &b, &views, &EvalOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let all = ThreadRanks::all(ranks);
        let got: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = all.iter().map(|d| s.spawn(|| exe.run_distributed(&views, d))).collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| ExecError::Internal("a rank panicked".into())).and_then(|r| r))
                .collect()
        });
        for (rank, g) in got.into_iter().enumerate() {
            let g = g.map_err(|e| TestCaseError::fail(format!("rank {rank}: {e}\n{src}\n{p}")))?;
            for (w, x) in want.iter().zip(&g) {
                close(w, x, &format!("rank {rank} of {ranks} under {limit} B\n{src}\n{p}"))?;
            }
        }
        ran.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    let ran = ran.into_inner();
    println!("{ran} of {cases} programs ran distributed");
    assert!(ran >= cases / 4, "only {ran} of {cases} programs ran distributed");
}
