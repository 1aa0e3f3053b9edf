//! File tests of the loop IR's passes, in the style of Cranelift's `.clif` filetests.
//!
//! Each `tests/loops_passes/<pass>/<case>.loops` holds, in order:
//!
//! ```text
//! ; Comment lines (what the case shows).
//! pass: <pass>
//! <input program, in the text form `print.rs` prints>
//! expect:
//! <the program after the pass>
//! ```
//!
//! The runner parses the input, verifies it at the stage the pass needs, runs that one
//! pass through the pass manager with verification on, prints the result, and compares it
//! with the expectation. It also runs the input and the output in the reference
//! interpreter (after the memory plan, which the interpreter needs) on the same inputs:
//! a pass must not change what a program computes. The input must be in printed (canonical) form, so files stay
//! comparable to `tessera emit --stage loops`.
//!
//! To add a case: write the comments, the `pass:` line and the input, put an `expect:`
//! line (with nothing after it) at the end, and run
//! `BLESS=1 cargo test -p tessera-compiler --test loops_passes pass_file_tests`: the
//! runner writes the pass's output below `expect:` (the filter keeps the coverage test
//! from reading a file while it is rewritten). Read it before committing: the blessed output is the
//! test's claim. BLESS rather than insta keeps a case's input and output in one file that
//! reads top to bottom, as Cranelift's filetests do.

use std::path::{Path, PathBuf};
use tessera_compiler::loops::passes::{pass, run_passes, RunOptions, PASSES};
use tessera_compiler::loops::{interpret_indexed, parse, verify_at, InterpOptions, Program, Stage};
use tessera_runtime::DType;

/// A case file split into its parts; line numbers are 1-based within the file.
struct Case {
    comments: Vec<String>,
    pass: String,
    input: String,
    input_line: usize,
    expect: String,
}

fn split(text: &str) -> Result<Case, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut k = 0;
    let mut comments = Vec::new();
    while k < lines.len() && lines[k].starts_with(';') {
        comments.push(lines[k].to_string());
        k += 1;
    }
    let pass = lines
        .get(k)
        .and_then(|l| l.strip_prefix("pass: "))
        .ok_or_else(|| format!("line {}: expected `pass: <name>` after the comments", k + 1))?
        .trim()
        .to_string();
    k += 1;
    let input_line = k + 1;
    let sep = lines[k..].iter().position(|l| *l == "expect:").ok_or("no `expect:` line")? + k;
    let input = lines[k..sep].join("\n").trim_end().to_string() + "\n";
    let expect = lines[sep + 1..].join("\n").trim_end().to_string();
    let expect = if expect.is_empty() { expect } else { expect + "\n" };
    Ok(Case { comments, pass, input, input_line, expect })
}

/// Runs one case: Ok(the pass's output) or a message saying what went wrong.
fn run(case: &Case, dir_pass: &str) -> Result<String, String> {
    if case.pass != dir_pass {
        return Err(format!("names pass `{}` but lives in the directory of `{dir_pass}`", case.pass));
    }
    let pass = pass(&case.pass).ok_or_else(|| format!("no pass is named `{}`", case.pass))?;
    let pass_name = case.pass.as_str();
    let mut p = parse(&case.input).map_err(|e| format!("{}:{}: {}", e.line + case.input_line - 1, e.col, e.message))?;
    let printed = p.to_string();
    if printed != case.input {
        return Err(format!("the input is not in printed form; it prints as\n{printed}"));
    }
    verify_at(&p, pass.from).map_err(|e| format!("the input does not verify at stage {:?}: {e}", pass.from))?;
    let before = results(&p, pass.from)?;
    run_passes(&mut p, &[pass], pass.from, &RunOptions { verify_each: true }).map_err(|e| e.to_string())?;
    let after = results(&p, pass.to)?;
    if !same(&before, &after) {
        return Err(format!("`{pass_name}` changed what the program computes"));
    }
    let out = p.to_string();
    // The output is itself a program the parser reads back to the same text.
    let again = parse(&out).map_err(|e| format!("the output does not parse: {e}\n{out}"))?;
    if again.to_string() != out {
        return Err(format!("the output does not print back the same:\n{out}"));
    }
    Ok(out)
}

/// The interpreter's outputs for `p` (at `stage`) on fixed pseudo-random inputs.
fn results(p: &Program, stage: Stage) -> Result<Vec<Vec<f64>>, String> {
    let mut q = p.clone();
    if stage == Stage::Kernels {
        let plan = pass("memory-plan").ok_or("no memory-plan pass")?;
        run_passes(&mut q, &[plan], stage, &RunOptions { verify_each: true }).map_err(|e| e.to_string())?;
    }
    let ins: Vec<Vec<f64>> = q
        .inputs
        .iter()
        .enumerate()
        .map(|(k, &b)| (0..q.buf(b).len()).map(|i| ((i * 7919 + k * 104729) % 2003) as f64 / 1001.0 - 1.0).collect())
        .collect();
    // Index arguments: pseudo-random entries in the range each one selects.
    let bounds = q.index_bounds();
    let idx: Vec<Vec<i64>> = q
        .indices
        .iter()
        .zip(&bounds)
        .map(|(&b, bound)| {
            let n = bound.as_ref().map_or(1, |x| x.extent.max(1));
            (0..q.buf(b).len()).map(|i| ((i * 7919 + 17) % n) as i64).collect()
        })
        .collect();
    let idx: Vec<&[i64]> = idx.iter().map(|v| v.as_slice()).collect();
    let err = |e: tessera_compiler::loops::InterpError| format!("the interpreter fails: {e}");
    let opts = InterpOptions::default();
    match q.dtype {
        DType::F64 => interpret_indexed(&q, &ins.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), &idx, opts).map_err(err),
        DType::F32 => {
            let ins: Vec<Vec<f32>> = ins.iter().map(|v| v.iter().map(|&x| x as f32).collect()).collect();
            let outs = interpret_indexed(&q, &ins.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), &idx, opts).map_err(err)?;
            Ok(outs.into_iter().map(|v| v.into_iter().map(f64::from).collect()).collect())
        }
    }
}

/// Equal element by element, NaN equal to NaN: the passes move computations but do not
/// reorder any floating-point operation.
fn same(a: &[Vec<f64>], b: &[Vec<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p == q || (p.is_nan() && q.is_nan())))
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loops_passes")
}

/// Every case of every pass directory, sorted.
fn case_files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(cases_dir()).expect("tests/loops_passes exists").map(|e| e.expect("readable").path()).collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a UTF-8 directory name").to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("readable")
            .map(|e| e.expect("readable").path())
            .filter(|p| p.extension().is_some_and(|x| x == "loops"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    out
}

#[test]
fn pass_file_tests() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for (dir_pass, path) in case_files() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let shown = path.strip_prefix(cases_dir()).unwrap_or(&path).display().to_string();
        let case = match split(&text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{shown}: {e}"));
                continue;
            }
        };
        match run(&case, &dir_pass) {
            Err(e) => failures.push(format!("{shown}: {e}")),
            Ok(out) if out == case.expect => {}
            Ok(out) if bless => {
                let mut file = case.comments.join("\n");
                if !file.is_empty() {
                    file.push('\n');
                }
                file.push_str(&format!("pass: {}\n{}expect:\n{out}", case.pass, case.input));
                std::fs::write(&path, file).expect("writable");
            }
            Ok(out) => failures
                .push(format!("{shown}: the output differs from the expectation (BLESS=1 rewrites it)\n{}", diff(&case.expect, &out))),
        }
    }
    assert!(failures.is_empty(), "{} failing case(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Lines only in the expectation (`-`) and only in the output (`+`), in order.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    // A longest common subsequence, small inputs only.
    let mut lcs = vec![vec![0usize; g.len() + 1]; w.len() + 1];
    for i in (0..w.len()).rev() {
        for j in (0..g.len()).rev() {
            lcs[i][j] = if w[i] == g[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < w.len() || j < g.len() {
        if i < w.len() && j < g.len() && w[i] == g[j] {
            out += &format!("  {}\n", w[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < g.len() && (i == w.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", g[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", w[i]);
            i += 1;
        }
    }
    out
}

/// Every pass has cases, at least one of which it must leave unchanged, and every
/// directory is a pass.
#[test]
fn every_pass_has_cases_including_one_it_leaves_alone() {
    let files = case_files();
    for dir in files.iter().map(|f| &f.0) {
        assert!(pass(dir).is_some(), "tests/loops_passes/{dir} names no pass");
    }
    for p in PASSES {
        let mine: Vec<Case> = files
            .iter()
            .filter(|f| f.0 == p.name)
            .map(|f| split(&std::fs::read_to_string(&f.1).expect("readable")).expect("well-formed"))
            .collect();
        assert!(mine.len() >= 2, "pass `{}` has {} file test(s), want at least 2", p.name, mine.len());
        assert!(mine.iter().any(|c| c.input == c.expect), "pass `{}` has no case it leaves unchanged", p.name);
        assert!(mine.iter().any(|c| c.input != c.expect), "pass `{}` has no case it changes", p.name);
    }
}

/// The differential check sees a change of result, in both dtypes, and runs temporaries
/// through the memory plan first.
#[test]
fn the_interpreter_check_sees_a_changed_result() {
    for dtype in ["f32", "f64"] {
        let text = format!(
            "program f ({dtype})\n  buf b0 x[4]  input 0\n  buf b1 y[4]  output 0\n  buf b2 t[4]  temp\n\n\
             kernel 0 loops t (steps 0)\n  parallel for i in 0..4 {{\n    t[i] = exp(x[i]) * 2.0\n  }}\n\n\
             kernel 1 loops y (steps 1)\n  parallel for i in 0..4 {{\n    y[i] = t[i] + 1.0\n  }}\n"
        );
        let a = parse(&text).expect("parses");
        let b = parse(&text.replace("* 2.0", "* 2.5")).expect("parses");
        let (ra, rb) = (results(&a, Stage::Kernels).expect("runs"), results(&b, Stage::Kernels).expect("runs"));
        assert!(same(&ra, &ra.clone()) && !same(&ra, &rb), "{ra:?} {rb:?}");
    }
}
