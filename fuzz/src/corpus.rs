//! The seed corpus: every `.tsr` program the project has (the standard library, the
//! snapshot cases, the regression programs, the latency set, the compare programs, the
//! fuzzer's own findings) and the programs embedded as string literals in the examples
//! and tests.

use std::path::{Path, PathBuf};
use tessera_compiler::diag::FileId;
use tessera_compiler::syntax::{ast, parse};

/// One corpus program: its text and, when it parses, its AST.
#[derive(Clone, Debug)]
pub struct Seed {
    pub origin: String,
    pub text: String,
    pub ast: Option<ast::Module>,
}

/// The workspace root (the fuzzer lives in `fuzz/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == ext)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Loads the corpus from the workspace. Programs that do not parse stay in it: their
/// tokens still feed token-level mutations.
pub fn load() -> Vec<Seed> {
    let root = workspace_root();
    let mut seeds = Vec::new();
    for dir in ["stdlib", "tests/cases", "tests/regressions", "bench/latency", "bench/compare/programs", "fuzz/findings"] {
        for p in files(&root.join(dir), "tsr") {
            if let Ok(text) = std::fs::read_to_string(&p) {
                seeds.push(seed(format!("{dir}/{}", file_name(&p)), text));
            }
        }
    }
    for dir in ["examples", "tests", "compiler/tests", "src/cli"] {
        for p in files(&root.join(dir), "rs") {
            if let Ok(text) = std::fs::read_to_string(&p) {
                for (k, prog) in embedded_programs(&text).into_iter().enumerate() {
                    let s = seed(format!("{dir}/{}#{k}", file_name(&p)), prog);
                    if s.ast.is_some() {
                        seeds.push(s);
                    }
                }
            }
        }
    }
    seeds
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn seed(origin: String, text: String) -> Seed {
    let ast = parse(&text, FileId(0)).ok();
    Seed { origin, text, ast }
}

/// String literals in Rust source that look like programs (`"fn ..."` or `r#"fn ..."#`),
/// unescaped; `format!` braces are undone, and literals with placeholders are skipped.
pub fn embedded_programs(rust: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = rust.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if rust[i..].starts_with("r#\"fn ") {
            let start = i + 3;
            if let Some(len) = rust[start..].find("\"#") {
                out.push(rust[start..start + len].to_string());
                i = start + len + 2;
                continue;
            }
        }
        if rust[i..].starts_with("\"fn ") {
            let mut s = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < b.len() {
                let c = rust[j..].chars().next().unwrap_or('"');
                match c {
                    '"' => {
                        closed = true;
                        j += 1;
                        break;
                    }
                    '\\' => {
                        let next = rust[j + 1..].chars().next().unwrap_or(' ');
                        match next {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            '"' => s.push('"'),
                            '\\' => s.push('\\'),
                            '\n' => {
                                // A line continuation skips the next line's indentation.
                                j += 2;
                                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                                    j += 1;
                                }
                                continue;
                            }
                            other => s.push(other),
                        }
                        j += 1 + next.len_utf8();
                        continue;
                    }
                    c => s.push(c),
                }
                j += c.len_utf8();
            }
            if closed {
                let has_placeholder = s.replace("{{", "").replace("}}", "").contains(['{', '}']) && s.contains("{{");
                let text = if s.contains("{{") { s.replace("{{", "{").replace("}}", "}") } else { s };
                if !has_placeholder {
                    out.push(text);
                }
            }
            i = j;
            continue;
        }
        i += rust[i..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_programs_are_unescaped() {
        let src = r##"let a = "fn f(x: f32[n]) -> y: f32[n] {\n    y[i] = x[i]\n}"; let b = format!("fn g(x: f32) -> y: f32 {{ y = {v} }}");"##;
        let got = embedded_programs(src);
        assert_eq!(got, vec!["fn f(x: f32[n]) -> y: f32[n] {\n    y[i] = x[i]\n}".to_string()]);
    }
}
