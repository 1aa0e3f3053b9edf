//! The einsum corpus: every spec of `tests/fixtures/einsum/corpus.json` (made by
//! `tests/gen_einsum_fixtures.py`) is translated to TIR, evaluated, and compared with the
//! result numpy (or opt_einsum, for non-ASCII labels) gave; every invalid spec must be
//! rejected with its diagnostic code.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tessera_compiler::einsum::{translate, Einsum};
use tessera_compiler::eval::{self, EvalOptions, Scalar};
use tessera_compiler::tir::{self, TensorId};
use tessera_compiler::FileId;
use tessera_runtime::DType;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/einsum")
}

fn read_json(path: PathBuf) -> Value {
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn corpus() -> Value {
    read_json(fixtures().join("corpus.json"))
}

fn entries<'a>(corpus: &'a Value, key: &str) -> &'a [Value] {
    corpus[key].as_array().map(Vec::as_slice).unwrap_or_else(|| panic!("corpus has no `{key}` list"))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of sizes, got {v}"))
        .iter()
        .map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or_else(|| panic!("bad size {x}")))
        .collect()
}

fn shapes_of(entry: &Value) -> Vec<Vec<usize>> {
    entry["shapes"]
        .as_array()
        .unwrap_or_else(|| panic!("entry without shapes: {entry}"))
        .iter()
        .map(usizes)
        .collect()
}

/// Element k (flat C order) of operand o, the formula the fixture script uses.
fn operand(o: usize, shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|k| ((k * 37 + o * 101 + 11) % 97) as f64 / 48.5 - 1.0).collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap_or_else(|e| panic!("shape {shape:?}: {e}"))
}

/// Evaluates a translated einsum with the reference evaluator.
fn evaluate<T: Scalar>(e: &Einsum, inputs: &[ArrayViewD<T>]) -> Result<ArrayD<T>, String> {
    let mut outs = eval::evaluate(&e.function, &e.bindings, inputs, &EvalOptions::default())
        .map_err(|err| format!("evaluation failed: {err}"))?;
    match (outs.pop(), outs.is_empty()) {
        (Some(out), true) => Ok(out),
        _ => Err("the function does not have exactly one output".to_string()),
    }
}

/// Translates, checks the shapes and evaluates one valid entry in f64 to 1e-10 relative
/// (to the largest expected magnitude, at least 1); `Err` describes a mismatch.
fn check_valid(entry: &Value) -> Result<(), String> {
    check_valid_in::<f64>(entry, 1e-10)
}

fn check_valid_in<T: Scalar>(entry: &Value, rtol: f64) -> Result<(), String> {
    let spec = entry["spec"].as_str().ok_or("no spec")?;
    let shapes = shapes_of(entry);
    let views: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let e = translate(spec, &views, T::DTYPE, FileId(0)).map_err(|d| format!("rejected: {}", d.message))?;
    tir::verify(&e.function).map_err(|m| format!("TIR does not verify: {m}"))?;
    let want_shape = usizes(&entry["output_shape"]);
    if e.output_shape != want_shape {
        return Err(format!("output shape {:?}, numpy has {want_shape:?}", e.output_shape));
    }
    for (k, s) in shapes.iter().enumerate() {
        let declared = e.function.shape(TensorId(k as u32), &e.bindings).map_err(|err| format!("{err:?}"))?;
        if &declared != s {
            return Err(format!("op{k} declared with shape {declared:?}, given {s:?}"));
        }
    }
    let inputs: Vec<ArrayD<T>> =
        shapes.iter().enumerate().map(|(o, s)| operand(o, s).mapv(T::from_f64)).collect();
    let views: Vec<ArrayViewD<T>> = inputs.iter().map(|a| a.view()).collect();
    let got = evaluate(&e, &views)?;
    if got.shape() != want_shape.as_slice() {
        return Err(format!("evaluated shape {:?}, numpy has {want_shape:?}", got.shape()));
    }
    let expected: Vec<f64> = entry["expected"]
        .as_array()
        .ok_or("no expected values")?
        .iter()
        .map(|x| x.as_f64().ok_or("expected value is not a number"))
        .collect::<Result<_, _>>()?;
    if expected.len() != got.len() {
        return Err(format!("{} values, numpy has {}", got.len(), expected.len()));
    }
    // Large networks multiply dozens of values below 1: their results can be far from 1,
    // so they are compared relative to their own size.
    let floor: f64 = if entry["category"] == "large" { 0.0 } else { 1.0 };
    let scale = expected.iter().fold(floor, |m, x| m.max(x.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return Err(format!("expected values of size {scale} cannot be compared relatively"));
    }
    // Iterating a standard-layout array visits elements in C order, as numpy's list does.
    for (n, (g, x)) in got.iter().zip(&expected).enumerate() {
        let g = Scalar::to_f64(*g);
        if (g - x).abs() > rtol * scale {
            return Err(format!(
                "element {n} (C order): got {g:?}, numpy {x:?} (tolerance {:e})",
                rtol * scale
            ));
        }
    }
    Ok(())
}

#[test]
fn corpus_is_broad() {
    let c = corpus();
    let valid = entries(&c, "valid");
    let invalid = entries(&c, "invalid");
    assert!(valid.len() >= 150, "only {} valid specs", valid.len());
    assert!(invalid.len() >= 30, "only {} invalid specs", invalid.len());
    for category in [
        "ellipsis",
        "broadcast1",
        "diagonal",
        "scalar",
        "zero",
        "unicode",
        "network",
        "implicit",
        "whitespace",
        "labels",
        "large",
    ] {
        assert!(valid.iter().any(|e| e["category"] == category), "no `{category}` specs in the corpus");
    }
}

/// Runs `check` on every valid entry and lists every failure.
fn check_all_valid(check: impl Fn(&Value) -> Result<(), String>) {
    let c = corpus();
    let valid = entries(&c, "valid");
    let mut failures = Vec::new();
    for entry in valid {
        let outcome =
            catch_unwind(AssertUnwindSafe(|| check(entry))).unwrap_or_else(|_| Err("panicked".to_string()));
        if let Err(why) = outcome {
            failures.push(format!("{:?} {}: {why}", entry["spec"].as_str().unwrap_or("?"), entry["shapes"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} specs fail:\n{}",
        failures.len(),
        valid.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_specs_match_numpy() {
    check_all_valid(check_valid);
}

/// The same specs translated for f32 (inputs rounded to f32), to f32 accuracy.
#[test]
fn valid_specs_match_numpy_in_f32() {
    check_all_valid(|entry| check_valid_in::<f32>(entry, 1e-5));
}

#[test]
fn invalid_specs_are_rejected_with_their_code() {
    let c = corpus();
    let mut failures = Vec::new();
    let invalid = entries(&c, "invalid");
    for entry in invalid {
        let spec = entry["spec"].as_str().unwrap_or_else(|| panic!("entry without spec: {entry}"));
        let code = entry["code"].as_str().unwrap_or_else(|| panic!("entry without code: {entry}"));
        let shapes = shapes_of(entry);
        let views: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| translate(spec, &views, DType::F64, FileId(0))));
        let problem = match outcome {
            Err(_) => Some("panicked".to_string()),
            Ok(Ok(_)) => Some("was accepted".to_string()),
            Ok(Err(d)) if d.code != code => Some(format!("gave {} ({}), expected {code}", d.code, d.message)),
            Ok(Err(d)) if d.labels.is_empty() || d.help.is_none() => {
                Some("has no span or no help".to_string())
            }
            Ok(Err(_)) => None,
        };
        if let Some(p) = problem {
            failures.push(format!("{spec:?} {}: {p}", entry["shapes"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid specs:\n{}",
        failures.len(),
        invalid.len(),
        failures.join("\n")
    );
}

/// Specs whose iteration space numpy refuses (more than 2^63-1 index combinations) and
/// opt_einsum plans: they translate, and the plan has opt_einsum's cost and a path.
#[test]
fn huge_iteration_spaces_translate_and_plan_like_opt_einsum() {
    use tessera_compiler::plan::{plan, PlanOptions};
    let c = corpus();
    let plannable = entries(&c, "plannable");
    assert!(plannable.len() >= 3, "only {} plannable specs", plannable.len());
    for entry in plannable {
        let spec = entry["spec"].as_str().unwrap_or_else(|| panic!("entry without spec: {entry}"));
        let shapes = shapes_of(entry);
        let views: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let e = translate(spec, &views, DType::F64, FileId(0)).unwrap_or_else(|d| panic!("{spec:?}: {}", d.message));
        let p = plan(&e.function, &e.bindings, &PlanOptions::default()).unwrap_or_else(|err| panic!("{spec:?}: {err}"));
        let want = entry["opt_cost"].as_f64().unwrap_or_else(|| panic!("{spec:?}: no opt_cost"));
        assert!((p.flops - want).abs() <= 1e-12 * want, "{spec:?}: {} FLOPs, opt_einsum {want}\n{p}", p.flops);
        assert!(p.path.is_some(), "{spec:?}: no path\n{p}");
    }
}

/// The large networks (more than 52 labels, iteration spaces past 2^63) evaluated through
/// their plan, the order the JIT runs them in, against opt_einsum.
#[test]
fn large_networks_match_opt_einsum_through_their_plan() {
    use tessera_compiler::plan::{plan, PlanOptions};
    let c = corpus();
    let large: Vec<&Value> = entries(&c, "valid").iter().filter(|e| e["category"] == "large").collect();
    assert!(large.len() >= 3, "only {} large networks", large.len());
    let mut symbols_past_ascii = false;
    for entry in large {
        let spec = entry["spec"].as_str().unwrap_or("?");
        symbols_past_ascii |= spec.contains('×') && spec.contains('÷');
        let shapes = shapes_of(entry);
        let views: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let e = translate(spec, &views, DType::F64, FileId(0)).unwrap_or_else(|d| panic!("{spec:?}: {}", d.message));
        let space: f64 = (0..e.function.dims.len()).map(|d| e.bindings.get(tir::DimId(d as u32)).unwrap_or(0) as f64).product();
        assert!(space > i64::MAX as f64, "{spec:?}: an iteration space of only {space}");
        let p = plan(&e.function, &e.bindings, &PlanOptions::default()).unwrap_or_else(|err| panic!("{spec:?}: {err}"));
        let inputs: Vec<ArrayD<f64>> = shapes.iter().enumerate().map(|(o, s)| operand(o, s)).collect();
        let views: Vec<ArrayViewD<f64>> = inputs.iter().map(|a| a.view()).collect();
        let got = eval::evaluate(&p.program, &e.bindings, &views, &EvalOptions::default())
            .unwrap_or_else(|err| panic!("{spec:?}: {err}"));
        let expected: Vec<f64> = entry["expected"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        assert_eq!(got.len(), 1, "{spec:?}: one output");
        assert_eq!(got[0].len(), expected.len(), "{spec:?}: output size");
        let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{spec:?}: an all-zero expectation proves nothing");
        for (g, x) in got[0].iter().zip(&expected) {
            assert!((g - x).abs() <= 1e-10 * scale, "{spec:?}: got {g}, opt_einsum {x}");
        }
    }
    assert!(symbols_past_ascii, "no large network uses opt_einsum's `×` and `÷` labels");
}

/// One npy case in its own dtype: the inputs hold the formula's values (so the facade
/// test can trust them), and evaluating the translation reproduces numpy's output.
/// Returns whether some input was read back column-major.
fn check_npy_case<T: Scalar + ndarray_npy::ReadableElement>(dir: &Path, case: &Value) -> bool {
    let name = case["name"].as_str().unwrap_or("?");
    let spec = case["spec"].as_str().unwrap_or_else(|| panic!("{name}: no spec"));
    let read = |file: &str| -> ArrayD<T> {
        let path = dir.join(file);
        ndarray_npy::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let files: Vec<&str> =
        case["inputs"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let fortran: Vec<bool> = case["fortran_order"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_bool).collect())
        .unwrap_or_default();
    assert_eq!(files.len(), fortran.len(), "{name}: inputs and fortran_order differ in length");
    let mut saw_fortran = false;
    let inputs: Vec<ArrayD<T>> = files
        .iter()
        .zip(&fortran)
        .enumerate()
        .map(|(o, (file, &f_order))| {
            let a = read(file);
            // ndarray-npy keeps numpy's layout: a Fortran-ordered file reads column-major.
            if f_order && a.ndim() > 1 {
                assert!(a.t().is_standard_layout() && !a.is_standard_layout(), "{file} is not column-major");
                saw_fortran = true;
            }
            let want = operand(o, a.shape()).mapv(T::from_f64);
            assert_eq!(a, want, "{file} does not hold the corpus formula");
            a
        })
        .collect();
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let e = translate(spec, &shapes, T::DTYPE, FileId(0)).unwrap_or_else(|d| panic!("{name}: {}", d.message));
    assert_eq!(e.output_shape, usizes(&case["output_shape"]), "{name}: manifest output shape");
    let views: Vec<ArrayViewD<T>> = inputs.iter().map(|a| a.view()).collect();
    let got = evaluate(&e, &views).unwrap_or_else(|m| panic!("{name}: {m}"));
    let expected = read(case["expected"].as_str().unwrap_or_else(|| panic!("{name}: no expected")));
    assert_eq!(got.shape(), expected.shape(), "{name}: output shape");
    let rtol = case["rtol"].as_f64().unwrap_or_else(|| panic!("{name}: no rtol"));
    let scale = expected.iter().fold(1.0f64, |m, x| m.max(Scalar::to_f64(*x).abs()));
    for (g, x) in got.iter().zip(expected.iter()) {
        assert!(
            (Scalar::to_f64(*g) - Scalar::to_f64(*x)).abs() <= rtol * scale,
            "{name}: got {g}, numpy {x}"
        );
    }
    saw_fortran
}

#[test]
fn npy_fixtures_agree_with_the_translation() {
    let dir = fixtures().join("npy");
    let manifest = read_json(dir.join("manifest.json"));
    let cases = manifest.as_array().unwrap_or_else(|| panic!("manifest is not a list"));
    assert!(cases.len() >= 3, "only {} npy cases", cases.len());
    let mut saw_fortran = false;
    let mut dtypes = Vec::new();
    for case in cases {
        let dtype = case["dtype"].as_str().unwrap_or("?");
        saw_fortran |= match dtype {
            "f32" => check_npy_case::<f32>(&dir, case),
            "f64" => check_npy_case::<f64>(&dir, case),
            other => panic!("{}: dtype {other:?}", case["name"]),
        };
        dtypes.push(dtype);
    }
    assert!(saw_fortran, "no Fortran-ordered input among the npy fixtures");
    assert!(dtypes.contains(&"f32") && dtypes.contains(&"f64"), "npy fixtures cover {dtypes:?}");
}

/// A deliberately wrong expectation must fail the comparison, so the corpus test can fail.
#[test]
fn the_comparison_catches_a_wrong_value() {
    let c = corpus();
    let mut entry = entries(&c, "valid")
        .iter()
        .find(|e| e["spec"] == "ij,jk->ik")
        .cloned()
        .unwrap_or_else(|| panic!("corpus has no matmul"));
    assert_eq!(check_valid(&entry), Ok(()));
    if let Some(first) = entry["expected"].as_array_mut().and_then(|v| v.first_mut()) {
        *first = Value::from(first.as_f64().unwrap_or(0.0) + 1e-6);
    }
    assert!(check_valid(&entry).is_err());
    entry["output_shape"] = Value::from(vec![4, 2]);
    assert!(check_valid(&entry).is_err());
}
