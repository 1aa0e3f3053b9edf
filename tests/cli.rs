//! End-to-end tests of the `tessera` binary: help texts, `check`, `emit`, `run`,
//! `einsum`, and every kind of bad input, which must fail with a clear message and an
//! exit status of 1 (user error) or 2 (usage error), never 101 (a panic).
//!
//! Commands run inside `tests/fixtures/cli` so that relative paths show in messages;
//! files written at test time live in a temp dir whose path is replaced by `[TMP]`
//! before snapshotting.

use ndarray::{arr0, arr1, arr2, Array, ArrayD, Dimension};
use ndarray_npy::{read_npy, write_npy, WritableElement};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// What one run of the binary did.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A temp dir for inputs and outputs, and the binary runner.
struct Env {
    tmp: TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    /// The absolute path of a file in the temp dir, as a string for the command line.
    fn path(&self, name: &str) -> String {
        self.tmp
            .path()
            .join(name)
            .to_str()
            .expect("temp paths are UTF-8")
            .to_string()
    }

    fn write<A: WritableElement, D: Dimension>(&self, name: &str, a: &Array<A, D>) -> String {
        let path = self.path(name);
        write_npy(&path, a).expect("write a test .npy");
        path
    }

    fn write_bytes(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }

    fn read_f64(&self, name: &str) -> ArrayD<f64> {
        read_npy(self.path(name)).expect("read an output .npy as f64")
    }

    fn read_f32(&self, name: &str) -> ArrayD<f32> {
        read_npy(self.path(name)).expect("read an output .npy as f32")
    }

    /// Runs `tessera` in the fixtures dir with colors off.
    fn run(&self, args: &[&str]) -> Outcome {
        let out = assert_cmd::cargo::cargo_bin_cmd!("tessera")
            .current_dir(fixtures())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("run tessera");
        let scrub = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let tmp = self.tmp.path().to_str().expect("temp paths are UTF-8");
            text.replace(tmp, "[TMP]")
        };
        let outcome = Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: scrub(&out.stdout),
            stderr: scrub(&out.stderr),
        };
        assert_ne!(outcome.code, 101, "tessera panicked: {outcome:#?}");
        assert_ne!(
            outcome.code, -1,
            "tessera was killed by a signal: {outcome:#?}"
        );
        outcome
    }

    /// Runs and expects the given exit status and an empty stdout; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, code, "wrong exit status for {args:?}: {out:#?}");
        assert_eq!(
            out.stdout, "",
            "a failing command printed to stdout: {out:#?}"
        );
        assert!(!out.stderr.trim().is_empty(), "no error message: {out:#?}");
        out.stderr
    }

    /// Runs and expects success; returns stdout.
    fn succeeds(&self, args: &[&str]) -> Outcome {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{args:?} failed: {out:#?}");
        out
    }

    /// Writes the two f64 inputs of `matmul.tsr` and returns their `NAME=path` forms.
    fn matmul_inputs(&self) -> (String, String) {
        let a = self.write("a.npy", &arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
        let b = self.write("b.npy", &arr2(&[[1.0], [0.5], [-1.0]]));
        (format!("A={a}"), format!("B={b}"))
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli")
}

/// A valid f64 `.npy` file of shape (2, 2), as bytes.
fn npy_bytes() -> Vec<u8> {
    let env = Env::new();
    let path = env.write("x.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
    std::fs::read(path).expect("read back a test .npy")
}

// ---------------------------------------------------------------------------------
// Help and usage

#[test]
fn help_of_every_subcommand() {
    let env = Env::new();
    for (name, args) in [
        ("help", vec!["--help"]),
        ("help_check", vec!["check", "--help"]),
        ("help_emit", vec!["emit", "--help"]),
        ("help_run", vec!["run", "--help"]),
        ("help_einsum", vec!["einsum", "--help"]),
        ("help_plan", vec!["plan", "--help"]),
    ] {
        let out = env.succeeds(&args);
        assert!(out.stdout.contains("Example"), "{name} has no example");
        insta::assert_snapshot!(name, out.stdout);
    }
}

#[test]
fn version_and_usage_errors() {
    let env = Env::new();
    let out = env.succeeds(&["--version"]);
    assert_eq!(
        out.stdout,
        format!("tessera {}\n", env!("CARGO_PKG_VERSION"))
    );
    let err = env.fails(2, &[]);
    assert!(err.contains("Usage: tessera <COMMAND>"), "{err}");
    let err = env.fails(2, &["frobnicate"]);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    let err = env.fails(2, &["run"]);
    assert!(err.contains("<FILE.tsr>"), "{err}");
    // `tessera help run`, as the README suggests, is `tessera run --help`.
    let help = env.succeeds(&["help", "run"]).stdout;
    assert_eq!(help, env.succeeds(&["run", "--help"]).stdout);
}

// ---------------------------------------------------------------------------------
// check

#[test]
fn check_a_good_file() {
    let env = Env::new();
    let out = env.succeeds(&["check", "matmul.tsr"]);
    assert_eq!(out.stdout, "");
    insta::assert_snapshot!("check_good", out.stderr);
    let out = env.succeeds(&["check", "model.tsr"]);
    assert!(out.stderr.contains("6 functions checked"), "{}", out.stderr);
}

#[test]
fn check_prints_warnings_and_succeeds() {
    let env = Env::new();
    let out = env.succeeds(&["check", "warn.tsr"]);
    assert!(
        out.stderr.contains("check::term-missing-index"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1 warning"), "{}", out.stderr);
    insta::assert_snapshot!("check_warning", out.stderr);
}

#[test]
fn check_a_bad_file() {
    let env = Env::new();
    let err = env.fails(1, &["check", "bad.tsr"]);
    assert!(err.contains("bad.tsr"), "{err}");
    insta::assert_snapshot!("check_bad", err);
}

#[test]
fn check_unreadable_sources() {
    let env = Env::new();
    let err = env.fails(1, &["check", "missing.tsr"]);
    assert!(err.contains("missing.tsr"), "{err}");
    insta::assert_snapshot!("check_missing_file", err);
    let err = env.fails(1, &["check", "binary.tsr"]);
    assert!(err.contains("binary.tsr"), "{err}");
    insta::assert_snapshot!("check_binary_file", err);
    let err = env.fails(1, &["check", "."]);
    assert!(err.contains("cannot read ."), "{err}");
}

// ---------------------------------------------------------------------------------
// emit

#[test]
fn emit_ast_and_tir() {
    let env = Env::new();
    let out = env.succeeds(&["emit", "--stage", "ast", "matmul.tsr"]);
    assert!(out.stdout.contains("matmul"), "{}", out.stdout);
    insta::assert_snapshot!("emit_ast", out.stdout);
    let out = env.succeeds(&["emit", "--stage", "tir", "matmul.tsr"]);
    assert!(out.stdout.contains("matmul"), "{}", out.stdout);
    insta::assert_snapshot!("emit_tir", out.stdout);
}

#[test]
fn emit_tir_of_one_function_or_all() {
    let env = Env::new();
    let one = env
        .succeeds(&["emit", "--stage", "tir", "model.tsr", "--fn", "stats"])
        .stdout;
    assert!(one.contains("stats") && !one.contains("matmul"), "{one}");
    insta::assert_snapshot!("emit_tir_stats", one);
    let all = env
        .succeeds(&["emit", "--stage", "tir", "model.tsr"])
        .stdout;
    for name in ["matmul", "stats", "ones", "scale", "dot", "twice"] {
        assert!(all.contains(name), "{name} missing from\n{all}");
    }
    assert!(
        all.contains(&one),
        "the one-function text is not part of the whole"
    );
}

#[test]
fn emit_errors() {
    let env = Env::new();
    let err = env.fails(1, &["emit", "--stage", "tir", "model.tsr", "--fn", "nope"]);
    assert!(err.contains("nope") && err.contains("matmul"), "{err}");
    let err = env.fails(2, &["emit", "--stage", "ast", "model.tsr", "--fn", "stats"]);
    assert!(err.contains("--stage ast prints the whole file"), "{err}");
    let err = env.fails(2, &["emit", "--stage", "bogus", "model.tsr"]);
    assert!(err.contains("[possible values: ast, tir, graph, plan, loops, clif, llvm, ptx]"), "{err}");
    let err = env.fails(1, &["emit", "--stage", "tir", "bad.tsr"]);
    assert!(err.contains("bad.tsr"), "{err}");
}

// ---------------------------------------------------------------------------------
// run: successes

#[test]
fn run_writes_the_only_output_with_a_bare_path() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let out = env.succeeds(&["run", "matmul.tsr", &a, &b, "-o", &env.path("c.npy")]);
    assert_eq!(out.stdout, "");
    assert_eq!(env.read_f64("c.npy"), arr2(&[[-1.0], [0.5]]).into_dyn());
}

#[test]
fn run_takes_inputs_in_any_order_and_named_outputs() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let c = format!("C={}", env.path("c.npy"));
    env.succeeds(&[
        "run",
        "matmul.tsr",
        &b,
        "--output",
        &c,
        &a,
        "--fn",
        "matmul",
    ]);
    assert_eq!(env.read_f64("c.npy"), arr2(&[[-1.0], [0.5]]).into_dyn());
}

/// Index inputs are read from int32 or int64 `.npy` files; an index out of range is a
/// user error naming the input, the position and the value; a float file is refused.
#[test]
fn run_gathers_with_integer_npy_inputs() {
    let env = Env::new();
    let u = format!("U={}", env.write("u.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.0]])));
    for (name, i) in [("i64.npy", env.write("i64.npy", &arr1(&[2i64, 0, 2, 1]))), ("i32.npy", env.write("i32.npy", &arr1(&[2i32, 0, 2, 1])))] {
        env.succeeds(&["run", "gather.tsr", &u, &format!("I={i}"), "-o", &env.path("y.npy")]);
        let want = arr2(&[[5.0, 6.0], [1.0, 2.0], [5.0, 6.0], [3.0, 4.0]]).into_dyn();
        assert_eq!(env.read_f64("y.npy"), want, "{name}");
    }
    let bad = env.write("bad.npy", &arr1(&[2i64, 3, 0]));
    let err = env.fails(1, &["run", "gather.tsr", &u, &format!("I={bad}")]);
    assert!(err.contains("index input `I` at [1] is 3, outside 0..3 (axis 0 of `U` has size 3)"), "{err}");
    let err = env.fails(1, &["run", "gather.tsr", &u, &format!("I={}", env.write("f.npy", &arr1(&[0.0f64])))]);
    assert!(err.contains("cannot read index input `I`") && err.contains("index inputs are int32 or int64 arrays"), "{err}");
    let err = env.fails(1, &["run", "gather.tsr", &u]);
    assert!(err.contains("input `I` of function `rows` is not given"), "{err}");
}

#[test]
fn run_prints_outputs_without_o() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let out = env.succeeds(&["run", "matmul.tsr", &a, &b]);
    assert_eq!(out.stderr, "");
    assert!(out.stdout.starts_with("C: f64[2, 1]\n"), "{}", out.stdout);
    insta::assert_snapshot!("run_print", out.stdout);
}

#[test]
fn run_with_two_outputs_writes_some_and_prints_the_rest() {
    let env = Env::new();
    let x = env.write("x.npy", &arr2(&[[1.0f32, 5.0, 2.0], [-1.0, -3.0, -2.0]]));
    let x = format!("X={x}");
    let total = format!("total={}", env.path("total.npy"));
    let largest = format!("largest={}", env.path("largest.npy"));
    let out = env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "stats",
        &x,
        "-o",
        &total,
        "-o",
        &largest,
    ]);
    assert_eq!(out.stdout, "");
    assert_eq!(env.read_f32("total.npy"), arr1(&[8.0f32, -6.0]).into_dyn());
    assert_eq!(
        env.read_f32("largest.npy"),
        arr1(&[5.0f32, -1.0]).into_dyn()
    );

    std::fs::remove_file(env.path("largest.npy")).expect("remove an output");
    let out = env.succeeds(&["run", "model.tsr", "--fn", "stats", &x, "-o", &total]);
    assert!(!Path::new(&env.path("largest.npy")).exists());
    assert!(
        out.stdout.starts_with("largest: f32[2]\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("total"), "{}", out.stdout);

    let out = env.succeeds(&["run", "model.tsr", "--fn", "stats", &x]);
    insta::assert_snapshot!("run_print_two_outputs", out.stdout);
}

#[test]
fn run_a_function_with_no_inputs_and_a_dim() {
    let env = Env::new();
    let out = env.succeeds(&["run", "model.tsr", "--fn", "ones", "--dim", "n=3"]);
    assert_eq!(out.stdout, "O: f32[3]\n[1, 1, 1]\n");
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "ones",
        "--dim",
        "n=4",
        "-o",
        &env.path("o.npy"),
    ]);
    assert_eq!(env.read_f32("o.npy"), ArrayD::from_elem(vec![4], 1.0f32));
}

#[test]
fn run_uses_the_dim_as_a_number() {
    let env = Env::new();
    let x = env.write("x.npy", &arr1(&[2.0f32, 4.0, 6.0, 8.0]));
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "scale",
        &format!("x={x}"),
        "-o",
        &env.path("y.npy"),
    ]);
    assert_eq!(
        env.read_f32("y.npy"),
        arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn()
    );
}

#[test]
fn run_writes_zero_d_outputs() {
    let env = Env::new();
    let x = env.write("x.npy", &arr1(&[1.0f32, 2.0, 3.0]));
    let y = env.write("y.npy", &arr1(&[4.0f32, 5.0, 6.0]));
    let (x, y) = (format!("x={x}"), format!("y={y}"));
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "dot",
        &x,
        &y,
        "-o",
        &env.path("s.npy"),
    ]);
    let s: ndarray::Array0<f32> = read_npy(env.path("s.npy")).expect("a 0-d output");
    assert_eq!(s, arr0(32.0f32));
    let out = env.succeeds(&["run", "model.tsr", "--fn", "dot", &x, &y]);
    assert_eq!(out.stdout, "s: f32[]\n32\n");
}

#[test]
fn run_casts_inputs_with_dtype() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
    let b = env.write("b.npy", &arr2(&[[0.5f64], [0.25]]));
    let (a, b) = (format!("A={a}"), format!("B={b}"));
    // model.tsr's matmul is f32: --dtype f64 evaluates in f64 and writes f64.
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "matmul",
        &a,
        &b,
        "--dtype",
        "f64",
        "-o",
        &env.path("c.npy"),
    ]);
    assert_eq!(env.read_f64("c.npy"), arr2(&[[1.0], [2.5]]).into_dyn());
    // --dtype f32 casts the f64 files down.
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "matmul",
        &a,
        &b,
        "--dtype",
        "f32",
        "-o",
        &env.path("d.npy"),
    ]);
    assert_eq!(env.read_f32("d.npy"), arr2(&[[1.0f32], [2.5]]).into_dyn());
}

#[test]
fn run_reads_fortran_order_big_endian_and_zero_d_files() {
    let env = Env::new();
    // fortran_2x3_f64.npy holds [[0, 1, 2], [3, 4, 5]] in Fortran order (made by numpy).
    let b = env.write("b.npy", &arr2(&[[1.0f64], [10.0], [100.0]]));
    let b = format!("B={b}");
    env.succeeds(&[
        "run",
        "matmul.tsr",
        "A=fortran_2x3_f64.npy",
        &b,
        "-o",
        &env.path("c.npy"),
    ]);
    assert_eq!(env.read_f64("c.npy"), arr2(&[[210.0], [543.0]]).into_dyn());
    // bigendian_f32.npy holds [1.5, -2.0, 3.25] as `>f4`.
    env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "dot",
        "x=bigendian_f32.npy",
        "y=bigendian_f32.npy",
        "-o",
        &env.path("s.npy"),
    ]);
    assert_eq!(
        env.read_f32("s.npy"),
        ArrayD::from_elem(vec![], 1.5f32 * 1.5 + 4.0 + 3.25 * 3.25)
    );
    // scalar_f64.npy holds the 0-d array 2.5.
    let out = env.succeeds(&["einsum", "->", "scalar_f64.npy"]);
    assert_eq!(out.stdout, "f64[]\n2.5\n");
}

#[test]
fn run_with_unicode_names() {
    let env = Env::new();
    let x = env.write("x.npy", &arr1(&[1.0f32, -2.0]));
    let beta = format!("β={}", env.path("b.npy"));
    let out = env.succeeds(&[
        "run",
        "model.tsr",
        "--fn",
        "twice",
        &format!("α={x}"),
        "-o",
        &beta,
    ]);
    assert_eq!(out.stdout, "");
    assert_eq!(env.read_f32("b.npy"), arr1(&[2.0f32, -4.0]).into_dyn());
}

#[test]
fn run_with_a_generous_memory_limit() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    for limit in ["512MiB", "1e9", "4096", "2 GB"] {
        env.succeeds(&[
            "run",
            "matmul.tsr",
            &a,
            &b,
            "--memory-limit",
            limit,
            "--backend",
            "interp",
        ]);
    }
}

// ---------------------------------------------------------------------------------
// einsum

#[test]
fn einsum_writes_and_prints() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
    let b = env.write("b.npy", &arr2(&[[1.0f32, 0.0], [1.0, 1.0]]));
    env.succeeds(&["einsum", "ij,jk->ik", &a, &b, "-o", &env.path("c.npy")]);
    assert_eq!(
        env.read_f32("c.npy"),
        arr2(&[[3.0f32, 2.0], [7.0, 4.0]]).into_dyn()
    );
    let out = env.succeeds(&["einsum", "ii->i", &a]);
    assert_eq!(out.stdout, "f32[2]\n[1, 4]\n");
    let out = env.succeeds(&["einsum", "ij->ji", &a]);
    insta::assert_snapshot!("einsum_print", out.stdout);
}

#[test]
fn einsum_promotes_to_f64_and_casts_with_dtype() {
    let env = Env::new();
    let a = env.write("a.npy", &arr1(&[1.0f32, 2.0]));
    let b = env.write("b.npy", &arr1(&[3.0f64, 4.0]));
    let out = env.succeeds(&["einsum", "i,i->", &a, &b]);
    assert_eq!(out.stdout, "f64[]\n11\n");
    let out = env.succeeds(&["einsum", "i,i->", &a, &b, "--dtype", "f32"]);
    assert_eq!(out.stdout, "f32[]\n11\n");
}

#[test]
fn einsum_errors() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
    let err = env.fails(1, &["einsum", "ij,jk->ik", &a]);
    assert!(
        err.contains("ij,jk->ik") || err.contains("operand"),
        "{err}"
    );
    let err = env.fails(1, &["einsum", "ij->q", &a]);
    insta::assert_snapshot!("einsum_bad_spec", err);
    let err = env.fails(1, &["einsum", "ij->i", "nope.npy"]);
    assert!(
        err.contains("cannot read operand 1 from `nope.npy`"),
        "{err}"
    );
    let err = env.fails(1, &["einsum", "ij->i", "int64.npy"]);
    assert!(err.contains("int64"), "{err}");
    env.fails(2, &["einsum", "ij->i"]);
    env.fails(2, &["einsum", "ij->i", &a, "--memory-limit", "lots"]);
    let err = env.fails(1, &["einsum", "ij,jk->ik", &a, &a, "--memory-limit", "8B"]);
    assert!(err.contains("memory limit"), "{err}");
}

// ---------------------------------------------------------------------------------
// run: bad .npy inputs

#[test]
fn run_with_a_missing_npy_file() {
    let env = Env::new();
    let (_, b) = env.matmul_inputs();
    let err = env.fails(1, &["run", "matmul.tsr", "A=does-not-exist.npy", &b]);
    insta::assert_snapshot!("npy_missing", err);
}

#[test]
fn run_with_broken_npy_files() {
    let env = Env::new();
    let (_, b) = env.matmul_inputs();
    let good = npy_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("npy_empty", Vec::new()),
        ("npy_not_npy", b"A,B\n1,2\n".to_vec()),
        ("npy_truncated_data", good[..good.len() - 5].to_vec()),
        ("npy_truncated_header", good[..30].to_vec()),
        ("npy_extra_bytes", [good.as_slice(), b"junk"].concat()),
        ("npy_bad_header", {
            let mut bad = good.clone();
            bad[20..26].copy_from_slice(b"?????\x00");
            bad
        }),
        ("npy_bad_version", {
            let mut bad = good.clone();
            bad[6] = 9;
            bad
        }),
        ("npy_zip", b"PK\x03\x04\x14\x00\x00\x00".to_vec()),
    ];
    for (name, bytes) in cases {
        let a = env.write_bytes(&format!("{name}.npy"), &bytes);
        let err = env.fails(1, &["run", "matmul.tsr", &format!("A={a}"), &b]);
        assert!(err.contains(&format!("{name}.npy")), "{name}: {err}");
        insta::assert_snapshot!(name, err);
    }
    let err = env.fails(
        1,
        &["run", "matmul.tsr", &format!("A={}", env.path("")), &b],
    );
    assert!(err.contains("it is a directory"), "{err}");
}

#[test]
fn run_with_npy_files_of_other_dtypes() {
    let env = Env::new();
    let (_, b) = env.matmul_inputs();
    // int64.npy, object.npy and complex128.npy were made by numpy.
    for (file, dtype) in [
        ("int64", "int64"),
        ("object", "object"),
        ("complex128", "complex128"),
    ] {
        let err = env.fails(1, &["run", "matmul.tsr", &format!("A={file}.npy"), &b]);
        assert!(err.contains(&format!("{file}.npy")), "{err}");
        assert!(err.contains(&format!("its dtype is {dtype}")), "{err}");
        assert!(err.contains("astype"), "{err}");
        if file == "int64" {
            insta::assert_snapshot!("npy_int64", err);
        }
    }
    let bools = env.write("bool.npy", &arr2(&[[true, false]]));
    let err = env.fails(1, &["run", "matmul.tsr", &format!("A={bools}"), &b]);
    assert!(err.contains("its dtype is bool"), "{err}");
    let u8s = env.write("u8.npy", &arr1(&[1u8, 2]));
    let err = env.fails(1, &["run", "matmul.tsr", &format!("A={u8s}"), &b]);
    assert!(err.contains("its dtype is uint8"), "{err}");
}

#[test]
fn run_with_the_wrong_dtype() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
    let b = env.write("b.npy", &arr2(&[[0.5f32], [0.25]]));
    let err = env.fails(
        1,
        &[
            "run",
            "model.tsr",
            "--fn",
            "matmul",
            &format!("A={a}"),
            &format!("B={b}"),
        ],
    );
    assert!(err.contains("--dtype f64"), "{err}");
    insta::assert_snapshot!("run_wrong_dtype", err);
}

#[test]
fn run_with_shapes_that_do_not_fit() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
    let b = env.write("b.npy", &arr2(&[[1.0f64], [2.0], [3.0]]));
    let (a, b) = (format!("A={a}"), format!("B={b}"));
    let err = env.fails(1, &["run", "matmul.tsr", &a, &b]);
    insta::assert_snapshot!("run_shape_mismatch", err);
    let v = env.write("v.npy", &arr1(&[1.0f64, 2.0]));
    let err = env.fails(1, &["run", "matmul.tsr", &a, &format!("B={v}")]);
    assert!(err.contains("B: f64[k, n] has 2 axes"), "{err}");
}

// ---------------------------------------------------------------------------------
// run: bad names, dims, sizes and outputs

#[test]
fn run_with_missing_extra_and_repeated_inputs() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let err = env.fails(1, &["run", "matmul.tsr", &a]);
    assert!(err.contains("`B`") && err.contains("not given"), "{err}");
    insta::assert_snapshot!("run_missing_input", err);
    let err = env.fails(1, &["run", "matmul.tsr"]);
    assert!(
        err.contains("`A` and `B` of function `matmul` are not given"),
        "{err}"
    );
    let extra = a.replacen("A=", "X=", 1);
    let err = env.fails(1, &["run", "matmul.tsr", &a, &b, &extra]);
    assert!(err.contains("no input `X`"), "{err}");
    insta::assert_snapshot!("run_unknown_input", err);
    let lower = a.replacen("A=", "a=", 1);
    let err = env.fails(1, &["run", "matmul.tsr", &lower, &b]);
    assert!(err.contains("did you mean `A`?"), "{err}");
    let err = env.fails(2, &["run", "matmul.tsr", &a, &b, &a]);
    assert!(err.contains("input `A` is given twice"), "{err}");
    let err = env.fails(2, &["run", "matmul.tsr", "a.npy"]);
    assert!(err.contains("NAME=FILE.npy"), "{err}");
    insta::assert_snapshot!("run_input_without_name", err);
    let err = env.fails(1, &["run", "model.tsr", "--fn", "ones", "--dim", "n=2", &a]);
    assert!(err.contains("takes no inputs"), "{err}");
}

#[test]
fn run_with_an_unknown_or_ambiguous_function() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let err = env.fails(1, &["run", "matmul.tsr", "--fn", "matmull", &a, &b]);
    assert!(err.contains("matmull") && err.contains("matmul"), "{err}");
    insta::assert_snapshot!("run_unknown_fn", err);
    let err = env.fails(1, &["run", "model.tsr", &a, &b]);
    assert!(err.contains("--fn") && err.contains("stats"), "{err}");
}

#[test]
fn run_with_bad_dims() {
    let env = Env::new();
    for (dim, expected) in [
        ("n", "expected NAME=SIZE"),
        ("n=", "no size given for dim `n`"),
        ("n=three", "must be a whole number"),
        ("n=-1", "must be a whole number"),
        ("3=n", "is not a dim name"),
    ] {
        let err = env.fails(2, &["run", "model.tsr", "--fn", "ones", "--dim", dim]);
        assert!(err.contains(expected), "--dim {dim}: {err}");
        if dim == "n=three" {
            insta::assert_snapshot!("run_bad_dim", err);
        }
    }
    let err = env.fails(
        2,
        &[
            "run",
            "model.tsr",
            "--fn",
            "ones",
            "--dim",
            "n=2",
            "--dim",
            "n=3",
        ],
    );
    assert!(
        err.contains("dim `n` is given twice (--dim n=2 and --dim n=3)"),
        "{err}"
    );
    // A dim that nothing determines, or one the function lacks, is the library's error.
    let err = env.fails(1, &["run", "model.tsr", "--fn", "ones"]);
    assert!(err.contains("--dim n="), "{err}");
    let err = env.fails(
        1,
        &[
            "run",
            "model.tsr",
            "--fn",
            "ones",
            "--dim",
            "n=2",
            "--dim",
            "q=1",
        ],
    );
    assert!(err.contains("no dim named `q`"), "{err}");
}

#[test]
fn run_with_bad_memory_limits() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    for (limit, expected) in [
        ("lots", "unknown unit `lots`"),
        ("4XB", "unknown unit `XB`"),
        ("-1", "cannot be negative"),
        ("", "expected a size"),
        ("1e30", "does not fit in 64 bits"),
    ] {
        let err = env.fails(2, &["run", "matmul.tsr", &a, &b, "--memory-limit", limit]);
        assert!(err.contains(expected), "--memory-limit {limit:?}: {err}");
        if limit == "4XB" {
            insta::assert_snapshot!("run_bad_memory_limit", err);
        }
    }
    let err = env.fails(1, &["run", "matmul.tsr", &a, &b, "--memory-limit", "8"]);
    assert!(err.contains("memory limit"), "{err}");
}

#[test]
fn run_with_bad_outputs() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let x = env.write("x.npy", &arr2(&[[1.0f32, 2.0]]));
    let x = format!("X={x}");
    let stats = ["run", "model.tsr", "--fn", "stats", x.as_str()];
    fn with<'a>(stats: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [stats, extra].concat()
    }

    let err = env.fails(1, &with(&stats, &["-o", "out.npy"]));
    assert!(
        err.contains("has 2 outputs (`total` and `largest`)"),
        "{err}"
    );
    insta::assert_snapshot!("run_bare_o_with_two_outputs", err);
    let err = env.fails(1, &with(&stats, &["-o", "mean=m.npy"]));
    assert!(
        err.contains("no output `mean`; its outputs are `total` and `largest`"),
        "{err}"
    );
    let err = env.fails(2, &with(&stats, &["-o", "a.npy", "-o", "b.npy"]));
    assert!(err.contains("name each output"), "{err}");
    let err = env.fails(2, &with(&stats, &["-o", "total=a.npy", "-o", "b.npy"]));
    assert!(err.contains("name each output"), "{err}");
    let err = env.fails(
        2,
        &with(&stats, &["-o", "total=a.npy", "-o", "total=b.npy"]),
    );
    assert!(err.contains("output `total` is given -o twice"), "{err}");
    let err = env.fails(
        2,
        &with(&stats, &["-o", "total=a.npy", "-o", "largest=a.npy"]),
    );
    assert!(err.contains("would both be written to `a.npy`"), "{err}");
    let err = env.fails(2, &with(&stats, &["-o", "total="]));
    assert!(err.contains("no path given for output `total`"), "{err}");

    let unwritable = env.path("no-such-dir/c.npy");
    let err = env.fails(1, &["run", "matmul.tsr", &a, &b, "-o", &unwritable]);
    assert!(
        err.contains("cannot write output `C` to `[TMP]/no-such-dir/c.npy`"),
        "{err}"
    );
    insta::assert_snapshot!("run_unwritable_output", err);
    // Nothing is written when an -o is wrong, even a valid one beside it.
    env.fails(
        1,
        &with(
            &stats,
            &[
                "-o",
                &format!("total={}", env.path("t.npy")),
                "-o",
                "mean=m.npy",
            ],
        ),
    );
    assert!(!Path::new(&env.path("t.npy")).exists());
}

#[test]
fn run_with_bad_sources() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let err = env.fails(1, &["run", "binary.tsr", &a, &b]);
    assert!(err.contains("binary.tsr"), "{err}");
    let err = env.fails(1, &["run", "empty.tsr", &a, &b]);
    insta::assert_snapshot!("run_empty_source", err);
    let err = env.fails(1, &["run", "missing.tsr", &a, &b]);
    assert!(err.contains("missing.tsr"), "{err}");
    let err = env.fails(1, &["run", "bad.tsr", "A=x.npy"]);
    assert!(err.contains("bad.tsr"), "{err}");
    let err = env.fails(2, &["run", "matmul.tsr", &a, &b, "--backend", "gpu"]);
    assert!(err.contains("[possible values: cranelift, llvm, cuda, interp, reference]"), "{err}");
}

#[test]
fn run_prints_warnings() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
    let out = env.succeeds(&["run", "warn.tsr", &format!("A={a}")]);
    assert!(
        out.stderr.contains("check::term-missing-index"),
        "{}",
        out.stderr
    );
    // Twice each row's sum plus 1.0 for each of the 2 columns.
    assert_eq!(out.stdout, "S: f64[2]\n[10, 18]\n");
}

// ---------------------------------------------------------------------------------
// Plans and the graph/plan stages

#[test]
fn plan_of_an_einsum_as_text_json_and_dot() {
    let env = Env::new();
    let args = ["plan", "--einsum", "ij,jk,kl->il", "--sizes", "i=10,j=100,k=5,l=50"];
    let text = env.succeeds(&args).stdout;
    assert!(text.contains("1.50e4 optimised"), "{text}");
    assert!(text.contains("ij,jk->ik"), "{text}");
    let json = env.succeeds(&[&args[..], &["--format", "json"]].concat()).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["flops"], 15000.0);
    assert_eq!(v["naive_flops"], 750000.0);
    assert_eq!(v["path"], serde_json::json!([[0, 1], [0, 1]]));
    for field in ["peak_bytes", "search_ms", "steps"] {
        assert!(v.get(field).is_some(), "no {field} in {json}");
    }
    let dot = env.succeeds(&[&args[..], &["--format", "dot"]].concat()).stdout;
    assert!(dot.starts_with("digraph"), "{dot}");
    let svg = env.succeeds(&[&args[..], &["--format", "svg"]].concat()).stdout;
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("op0[10, 100]") && svg.contains("out[10, 50]"), "edges and boxes carry shapes:\n{svg}");
}

/// opt_einsum's labels (`×`, `÷`, digits, punctuation) go through `--einsum` and
/// `--sizes`, and a single einsum's JSON always has its `path`, whatever its shape.
#[test]
fn plan_of_an_einsum_takes_opt_einsum_labels_and_always_has_a_path() {
    let env = Env::new();
    let json = |spec: &str, sizes: &str| -> serde_json::Value {
        let out = env.succeeds(&["plan", "--einsum", spec, "--sizes", sizes, "--format", "json"]).stdout;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{spec}: {e}\n{out}"))
    };
    let v = json("×÷,÷1,1!->×!", "×=10,÷=100,1=5,!=50");
    assert_eq!(v["flops"], 15000.0);
    assert_eq!(v["path"], serde_json::json!([[0, 1], [0, 1]]));
    assert!(v["algebra"]["stop_reason"].as_str().is_some_and(|r| r.starts_with("not run")), "{v}");
    // A lone operand, a product without a summed index, and a scalar factor.
    assert_eq!(json("ij->i", "i=2,j=3")["path"], serde_json::json!([[0]]));
    assert_eq!(json("ij,jk->ijk", "i=2,j=3,k=4")["path"], serde_json::json!([[0, 1]]));
    assert_eq!(json("ij,jk,->ik", "i=2,j=3,k=4")["path"], serde_json::json!([[0, 1], [0, 1]]));
    // The operand the path search takes last is not always the last one written.
    let v = json("ik,ij,jk->ik", "i=2,j=3,k=4");
    assert_eq!(v["path"].as_array().map(Vec::len), Some(2), "{v}");
    let err = env.fails(2, &["plan", "--einsum", "ij->i", "--sizes", "ij=2"]);
    assert!(err.contains("not an einsum label"), "{err}");
}

#[test]
fn plan_of_a_file_needs_every_dim() {
    let env = Env::new();
    let out = env.succeeds(&["plan", "matmul.tsr", "--dim", "m=4", "--dim", "k=5", "--dim", "n=6"]).stdout;
    assert!(out.starts_with("plan for `matmul`"), "{out}");
    let err = env.fails(1, &["plan", "matmul.tsr", "--dim", "m=4"]);
    assert!(err.contains("missing: k, n"), "{err}");
    let err = env.fails(1, &["plan", "matmul.tsr", "--dim", "q=4"]);
    assert!(err.contains("has no dim `q`"), "{err}");
    let err = env.fails(1, &["plan", "--einsum", "ij,jk->ik", "--sizes", "i=2,j=3"]);
    assert!(err.contains("no size for label `k`"), "{err}");
    let err = env.fails(1, &["plan", "--einsum", "ij,jk,kl->il", "--sizes", "i=4,j=4,k=4,l=4", "--memory-limit", "1"]);
    assert!(err.contains("memory limit"), "{err}");
    env.fails(2, &["plan"]);
    env.fails(2, &["plan", "matmul.tsr", "--einsum", "ij->i", "--sizes", "i=2,j=2"]);
}

#[test]
fn emit_graph_and_plan_stages() {
    let env = Env::new();
    let graph = env.succeeds(&["emit", "--stage", "graph", "matmul.tsr"]).stdout;
    assert!(graph.contains("components: 1"), "{graph}");
    let plan = env.succeeds(&["emit", "--stage", "plan", "matmul.tsr", "--dim", "m=2", "--dim", "k=3", "--dim", "n=4"]).stdout;
    assert!(plan.contains("contract"), "{plan}");
    let err = env.fails(1, &["emit", "--stage", "plan", "matmul.tsr"]);
    assert!(err.contains("needs a size for every dim"), "{err}");
}

#[test]
fn run_on_every_backend_agrees() {
    let env = Env::new();
    let a = env.write("a.npy", &arr2(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    let b = env.write("b.npy", &arr2(&[[1.0f64, 0.0], [0.0, 1.0], [2.0, -1.0]]));
    let mut results = Vec::new();
    // `jit` is the old name of `cranelift`.
    let mut backends = vec!["cranelift", "jit", "interp", "reference"];
    if cfg!(feature = "llvm") {
        backends.push("llvm");
    } else {
        let out = env.path("c_llvm.npy");
        let err = env.fails(1, &["run", "matmul.tsr", &format!("A={a}"), &format!("B={b}"), "--backend", "llvm", "-o", &out]);
        assert!(err.contains("no LLVM backend") && err.contains("--features llvm"), "{err}");
    }
    for backend in backends {
        let out = env.path(&format!("c_{backend}.npy"));
        env.succeeds(&["run", "matmul.tsr", &format!("A={a}"), &format!("B={b}"), "--backend", backend, "-o", &out]);
        results.push(env.read_f64(&format!("c_{backend}.npy")));
    }
    assert_eq!(results[0], arr2(&[[7.0, -1.0], [16.0, -1.0]]).into_dyn());
    for r in &results[1..] {
        assert_eq!(&results[0], r);
    }
}

#[test]
fn emit_loops_and_clif() {
    let env = Env::new();
    let out = env.succeeds(&["emit", "--stage", "loops", "model.tsr", "--fn", "matmul", "--dim", "m=8", "--dim", "k=8", "--dim", "n=8"]);
    assert!(out.stdout.contains("program matmul") && out.stdout.contains("gemm"), "{}", out.stdout);
    let out = env.succeeds(&["emit", "--stage", "clif", "model.tsr", "--fn", "stats", "--dim", "m=4", "--dim", "n=16"]);
    assert!(out.stdout.contains("function"), "{}", out.stdout);
    let err = env.fails(1, &["emit", "--stage", "loops", "model.tsr", "--fn", "matmul"]);
    assert!(err.contains("needs a size for every dim"), "{err}");
    let args = ["emit", "--stage", "llvm", "model.tsr", "--fn", "stats", "--dim", "m=4", "--dim", "n=16"];
    if cfg!(feature = "llvm") {
        let out = env.succeeds(&args);
        assert!(out.stdout.contains("define"), "{}", out.stdout);
    } else {
        let err = env.fails(1, &args);
        assert!(err.contains("no LLVM backend"), "{err}");
    }
}

#[test]
fn bench_reports_text_and_json() {
    let env = Env::new();
    let out = env.succeeds(&["bench", "matmul.tsr", "--dim", "m=16", "--dim", "k=8", "--dim", "n=4", "--min-time", "0"]);
    assert!(out.stdout.contains("median") && out.stdout.contains("GFLOP/s"), "{}", out.stdout);
    let out = env.succeeds(&[
        "bench", "--einsum", "ij,jk->ik", "--sizes", "i=8,j=8,k=8", "--dtype", "f64", "--format", "json", "--min-time", "0",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("bench prints one JSON object");
    for key in ["compile_ms", "lower_ms", "codegen_ms", "plan_ms", "median_ms", "min_ms", "runs", "gflops", "flops", "peak_bytes"] {
        assert!(v.get(key).is_some_and(|x| x.is_number()), "{key} missing in {v}");
    }
    assert_eq!(v["dtype"], "f64");
    assert!(v["runs"].as_u64().unwrap_or(0) >= 5);
    let err = env.fails(2, &["bench", "matmul.tsr", "--min-time", "-1"]);
    assert!(err.contains("--min-time"), "{err}");
    let err = env.fails(2, &["bench", "matmul.tsr", "--dim", "m=2", "--dim", "k=2", "--dim", "n=2", "--backend", "reference"]);
    assert!(err.contains("reference"), "{err}");
    let err = env.fails(1, &["bench", "matmul.tsr", "--dim", "m=2"]);
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn einsum_run_and_bench_slice_under_a_memory_limit() {
    let env = Env::new();
    let m = Array::from_shape_fn((40, 40), |(i, j)| ((i * 7 + j * 3) % 11) as f64 * 0.1 - 0.5);
    let a = env.write("m.npy", &m);
    let spec = "ij,jk,kl,li->";
    env.succeeds(&["einsum", spec, &a, &a, &a, &a, "-o", &env.path("whole.npy")]);
    // Each 40 × 40 intermediate is 12.5 KiB: 4 KiB forces slice loops.
    env.succeeds(&["einsum", spec, &a, &a, &a, &a, "--memory-limit", "4KiB", "-o", &env.path("sliced.npy")]);
    let (whole, sliced) = (env.read_f64("whole.npy"), env.read_f64("sliced.npy"));
    let (w, s) = (whole.sum(), sliced.sum());
    assert!((w - s).abs() <= 1e-9 * w.abs().max(1.0), "{w} vs {s}");
    // `run` slices a max= reduction over the intermediate's columns the same way.
    let src = env.write_bytes("top.tsr", b"fn f(A: f64[n, k], B: f64[k, m]) -> top: f64[n] {\n    T[i, j] = A[i, l] * B[l, j]\n    top[i] max= T[i, j]\n}\n");
    env.succeeds(&["run", &src, &format!("A={a}"), &format!("B={a}"), "-o", &env.path("top.npy")]);
    env.succeeds(&["run", &src, &format!("A={a}"), &format!("B={a}"), "--memory-limit", "4KiB", "-o", &env.path("top_sliced.npy")]);
    // Chunks of rows go through GEMMs of other shapes, which may round differently.
    let (top, top_sliced) = (env.read_f64("top.npy"), env.read_f64("top_sliced.npy"));
    assert_eq!(top.shape(), top_sliced.shape());
    assert!(top.iter().zip(&top_sliced).all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0)), "{top} vs {top_sliced}");
    // bench reports the slices, and intermediates within the limit.
    let out = env.succeeds(&[
        "bench", "--einsum", spec, "--sizes", "i=40,j=40,k=40,l=40", "--dtype", "f64", "--memory-limit", "4KiB", "--format",
        "json", "--min-time", "0",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("bench prints one JSON object");
    let (temp, outputs) = (v["temp_bytes"].as_u64().unwrap_or(u64::MAX), v["output_bytes"].as_u64().unwrap_or(u64::MAX));
    assert!(temp <= 4096 && v["peak_bytes"].as_u64() == Some(temp + outputs), "{v}");
    assert!(v["slices"].as_u64().unwrap_or(0) >= 2 && !v["slice_loops"].as_array().is_some_and(|l| l.is_empty()), "{v}");
    let out = env.succeeds(&["bench", "--einsum", spec, "--sizes", "i=40,j=40,k=40,l=40", "--memory-limit", "4KiB", "--min-time", "0"]);
    assert!(out.stdout.contains("slicing") && out.stdout.contains("chunks of"), "{}", out.stdout);
    // A limit that no slicing meets is refused with the numbers.
    let err = env.fails(1, &["einsum", spec, &a, &a, &a, &a, "--memory-limit", "32B"]);
    assert!(err.contains("memory limit"), "{err}");
    // One that only slices recomputing most of the work (a million slices, 20 times the
    // FLOPs) is refused too, with the cost.
    let err = env.fails(1, &["einsum", spec, &a, &a, &a, &a, "--memory-limit", "64B"]);
    assert!(err.contains("sensible cost") && err.contains("times the"), "{err}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_needs_the_mpi_feature() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    let err = env.fails(2, &["run", "matmul.tsr", &a, &b, "--distributed"]);
    assert!(err.contains("--features mpi"), "{err}");
    let err = env.fails(2, &["einsum", "ij,jk->ik", &a, &a, "--distributed"]);
    assert!(err.contains("--features mpi"), "{err}");
}

/// `--mul lmul` and `--mul lmul3` on run, einsum, plan and bench, on the small matmul
/// whose L-Mul products are exact in binary: 1·1 → 1.0625, 2·0.5 → 1.0625, 3·-1 → -2·1.5625.
#[test]
fn mul_lmul_on_run_einsum_plan_and_bench() {
    let env = Env::new();
    let (a, b) = env.matmul_inputs();
    for (mode, want) in [("lmul", [[-1.0], [0.625]]), ("lmul3", [[-1.0], [0.75]])] {
        for backend in ["cranelift", "interp", "reference"] {
            env.succeeds(&["run", "matmul.tsr", &a, &b, "--mul", mode, "--backend", backend, "-o", &env.path("c.npy")]);
            assert_eq!(env.read_f64("c.npy"), arr2(&want).into_dyn(), "{mode} {backend}");
            let (pa, pb) = (&a[2..], &b[2..]);
            env.succeeds(&["einsum", "ij,jk->ik", pa, pb, "--mul", mode, "--backend", backend, "-o", &env.path("e.npy")]);
            assert_eq!(env.read_f64("e.npy"), arr2(&want).into_dyn(), "einsum {mode} {backend}");
        }
        let plan = env.succeeds(&["plan", "matmul.tsr", "--dim", "m=2", "--dim", "k=3", "--dim", "n=1", "--mul", mode]);
        assert!(plan.stdout.contains(&format!("mul      {mode} ")), "{}", plan.stdout);
        let bench = env.succeeds(&["bench", "--einsum", "ij,jk->ik", "--sizes", "i=8,j=8,k=8", "--mul", mode, "--min-time", "0"]);
        assert!(bench.stdout.contains(&format!("mul {mode}")), "{}", bench.stdout);
    }
    let err = env.fails(2, &["run", "matmul.tsr", &a, &b, "--mul", "lmul99"]);
    assert!(err.contains("unknown multiplication `lmul99`"), "{err}");
}
