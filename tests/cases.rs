//! File-driven snapshot tests: each `tests/cases/*.tsr` starts with a directive
//! `# stages: ast, tir, diagnostics` naming the stage outputs to snapshot.

use std::path::Path;
use tessera_compiler::diag::render_all;
use tessera_compiler::pipeline::{self, Stage};
use tessera_compiler::Backend;
use tessera_compiler::syntax::{parse, print_module};

mod common;

const STAGES: &[&str] = &["ast", "tir", "graph", "plan", "loops", "clif", "diagnostics"];

fn stages_of(text: &str, path: &Path) -> Vec<String> {
    let first = text.lines().next().unwrap_or("");
    let list = first
        .strip_prefix("# stages:")
        .unwrap_or_else(|| panic!("{}: first line must be `# stages: ...`", path.display()));
    let stages: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for s in &stages {
        assert!(STAGES.contains(&s.as_str()), "{}: unknown stage `{s}`", path.display());
    }
    assert!(!stages.is_empty(), "{}: no stages named", path.display());
    stages
}

/// `# dims: n=64, d=16` on the second line gives the sizes for the `plan`, `loops` and
/// `clif` stages.
fn dims_of(text: &str, path: &Path) -> Vec<(String, u64)> {
    let line = text.lines().nth(1).unwrap_or("");
    let list = line
        .strip_prefix("# dims:")
        .unwrap_or_else(|| panic!("{}: the plan stage needs `# dims: n=.., ...` on line 2", path.display()));
    common::dim_list(list, path)
}

/// Search times vary from run to run; everything else in a plan is deterministic.
fn redact_timing(plan: &str) -> String {
    plan.lines()
        .map(|l| match l.find(" ms") {
            Some(end) if l.trim_start().starts_with("search") => {
                let start = l[..end].rfind(' ').map_or(0, |s| s + 1);
                format!("{}<time>{}", &l[..start], &l[end..])
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `f` at the case's dims through the pipeline driver, stopped after `stage`.
fn compiled(f: &tessera_compiler::tir::Function, dims: &[(String, u64)], name: &str, stage: Stage) -> pipeline::Output {
    let mut b = tessera_compiler::tir::Bindings::new(f.dims.len());
    for (n, v) in dims {
        if let Some(d) = f.dim_by_name(n) {
            b.set(d, *v);
        }
    }
    let opts = pipeline::Options { stop_after: stage, ..Default::default() };
    pipeline::compile(f, &b, f.dtype, &opts).unwrap_or_else(|e| panic!("{name}: {}: {e}", f.name))
}

#[test]
fn cases() {
    insta::glob!("cases/*.tsr", |path| {
        let text = std::fs::read_to_string(path).expect("case file is readable");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("case.tsr");
        let (sources, file, checked) = pipeline::check(name, &text);
        for stage in stages_of(&text, path) {
            match stage.as_str() {
                "ast" => {
                    let ast = checked.ast.as_ref().unwrap_or_else(|| panic!("{name} does not parse"));
                    let printed = print_module(ast);
                    // The printed AST parses back to the same text.
                    let again = parse(&printed, file).unwrap_or_else(|d| panic!("{name}: reprint fails: {}", d.message));
                    assert_eq!(print_module(&again), printed, "{name}: AST printing is not a fixpoint");
                    insta::assert_snapshot!("ast", printed);
                }
                "graph" => {
                    assert!(!checked.has_errors(), "{name} has errors");
                    let text: Vec<String> = checked
                        .functions
                        .iter()
                        .map(|f| format!("fn {}\n{}", f.name, tessera_compiler::graph::build(f).to_text(f)))
                        .collect();
                    insta::assert_snapshot!("graph", text.join("\n"));
                }
                "plan" => {
                    // Workload cases must check cleanly: a warning there means the formula
                    // is not the one intended (e.g. a term multiplied by a summed size).
                    assert!(
                        checked.diagnostics.is_empty(),
                        "{name} has diagnostics:\n{}",
                        render_all(&checked.diagnostics, &sources, false)
                    );
                    let dims = dims_of(&text, path);
                    let plans: Vec<String> =
                        checked.functions.iter().map(|f| redact_timing(&compiled(f, &dims, name, Stage::Plan).plan.to_string())).collect();
                    insta::assert_snapshot!("plan", plans.join("\n"));
                }
                "loops" | "clif" => {
                    assert!(!checked.has_errors(), "{name} has errors");
                    let dims = dims_of(&text, path);
                    let mut texts = Vec::new();
                    for f in &checked.functions {
                        let out = compiled(f, &dims, name, Stage::Loops);
                        let prog = out.program().unwrap_or_else(|| panic!("{name}: no loop program"));
                        texts.push(if stage == "loops" {
                            prog.to_string()
                        } else {
                            pipeline::emit(prog, Backend::Cranelift).unwrap_or_else(|e| panic!("{name}: {}: {e}", f.name))
                        });
                    }
                    insta::assert_snapshot!(stage.as_str(), texts.join("\n"));
                    // The same input through every native backend (naga-style): LLVM's IR
                    // before its optimisations, which depend on the host CPU.
                    #[cfg(feature = "llvm")]
                    if stage == "clif" {
                        let mut ir = Vec::new();
                        for f in &checked.functions {
                            let out = compiled(f, &dims, name, Stage::Loops);
                            let prog = out.program().unwrap_or_else(|| panic!("{name}: no loop program"));
                            ir.push(
                                tessera_compiler::codegen::llvm::emit_ir(prog, false)
                                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", f.name)),
                            );
                        }
                        insta::assert_snapshot!("llvm", ir.join("\n"));
                    }
                }
                "tir" => {
                    assert!(
                        !checked.has_errors(),
                        "{name} has errors:\n{}",
                        render_all(&checked.diagnostics, &sources, false)
                    );
                    let tir: Vec<String> = checked.functions.iter().map(|f| f.to_string()).collect();
                    insta::assert_snapshot!("tir", tir.join("\n"));
                }
                _ => {
                    assert!(!checked.diagnostics.is_empty(), "{name}: expected diagnostics, got none");
                    insta::assert_snapshot!("diagnostics", render_all(&checked.diagnostics, &sources, false));
                }
            }
        }
    });
}

/// Every diagnostic code the compiler can emit has a case whose snapshot shows it.
#[test]
fn every_diagnostic_code_has_a_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut codes = Vec::new();
    for dir in ["compiler/src/check", "compiler/src/syntax"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("source dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") || path.ends_with("tests.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).expect("source");
            for prefix in ["\"check::", "\"syntax::"] {
                for (pos, _) in src.match_indices(prefix) {
                    let rest = &src[pos + 1..];
                    let end = rest.find('"').unwrap_or(0);
                    let code = &rest[..end];
                    if !codes.contains(&code.to_string()) {
                        codes.push(code.to_string());
                    }
                }
            }
        }
    }
    assert!(codes.len() > 30, "found only {} codes", codes.len());
    let mut snapshots = String::new();
    for entry in std::fs::read_dir(root.join("tests/snapshots")).expect("snapshots dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().contains("diagnostics") {
            snapshots.push_str(&std::fs::read_to_string(&path).expect("snapshot"));
        }
    }
    let missing: Vec<&String> = codes.iter().filter(|c| !snapshots.contains(&format!("\n{c}\n"))).collect();
    assert!(missing.is_empty(), "diagnostic codes without a snapshot case: {missing:?}");
}
