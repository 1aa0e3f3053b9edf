//! The checker: AST → typed program (TIR).
//!
//! Resolves `use std::..` modules and names, infers every index's range, checks shapes
//! and dtypes, makes reductions explicit and inlines calls. Every user mistake becomes a
//! spanned [`Diagnostic`]; checking goes on after an error where that gives useful
//! further messages, and a statement that failed poisons its target so that later uses
//! do not repeat the complaint.

mod consts;
mod func;
mod inline;
mod names;
mod stmt;

use crate::diag::{Diagnostic, FileId, SourceMap, Span};
use crate::syntax::{self, ast};
use crate::tir;
use std::collections::HashMap;

pub use names::suggest;

/// Calls may nest this deep (f calls g calls h ...).
pub const MAX_CALL_DEPTH: usize = 64;
/// Statements of one function after inlining.
pub const MAX_STATEMENTS: usize = 100_000;

/// The result of checking a file: the functions that checked cleanly, and every
/// diagnostic (errors and warnings) in source order per function.
#[derive(Debug)]
pub struct Checked {
    pub functions: Vec<tir::Function>,
    pub diagnostics: Vec<Diagnostic>,
    /// The parsed root file (for `emit --stage ast`), if it parsed.
    pub ast: Option<ast::Module>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// A function's key: the module it is in and its index there.
type FnKey = (usize, usize);

struct LoadedModule {
    /// `None` for the root file, `Some("attention")` for `std::attention`.
    std_name: Option<String>,
    ast: ast::Module,
    /// Module names this module imported with `use`.
    imports: Vec<String>,
}

pub(crate) struct Checker<'s> {
    sources: &'s mut SourceMap,
    modules: Vec<LoadedModule>,
    diags: Vec<Diagnostic>,
    done: HashMap<FnKey, Option<tir::Function>>,
    in_progress: Vec<FnKey>,
}

/// Parses and checks the file `root` (already in `sources`); `use`d stdlib modules are
/// added to `sources` as `std/NAME.tsr`.
pub fn check_file(sources: &mut SourceMap, root: FileId) -> Checked {
    let text = sources.get(root).text.clone();
    let ast = match syntax::parse(&text, root) {
        Ok(m) => m,
        Err(d) => return Checked { functions: Vec::new(), diagnostics: vec![d], ast: None },
    };
    let mut c = Checker { sources, modules: Vec::new(), diags: Vec::new(), done: HashMap::new(), in_progress: Vec::new() };
    c.add_module(None, ast.clone());
    if ast.functions.is_empty() {
        let end = text.len();
        c.diags.push(
            Diagnostic::error("check::no-functions", "this file defines no functions")
                .label(Span::new(root, 0, end.min(1)), "nothing to check or run")
                .help("define one: `fn f(A: f32[n]) -> B: f32[n] { B[i] = 2 * A[i] }`"),
        );
    }
    let mut functions = Vec::new();
    for i in 0..ast.functions.len() {
        if let Some(f) = c.function((0, i)) {
            functions.push(f);
        }
    }
    Checked { functions, diagnostics: c.diags, ast: Some(ast) }
}

impl Checker<'_> {
    /// Registers a parsed module and loads what it `use`s.
    fn add_module(&mut self, std_name: Option<String>, ast: ast::Module) -> usize {
        let id = self.modules.len();
        self.modules.push(LoadedModule { std_name, ast: ast.clone(), imports: Vec::new() });
        let mut seen: HashMap<String, Span> = HashMap::new();
        for u in &ast.functions {
            if let Some(prev) = seen.insert(u.name.name.clone(), u.name.span) {
                self.diags.push(
                    Diagnostic::error("check::duplicate-fn", format!("function `{}` is defined twice", u.name.name))
                        .label(u.name.span, "defined again here")
                        .label(prev, "first defined here")
                        .help("rename one of them"),
                );
            }
        }
        for u in &ast.uses {
            let names: Vec<&str> = u.path.iter().map(|i| i.name.as_str()).collect();
            let available = crate::stdlib::names().join(", ");
            match names.as_slice() {
                ["std", m] => {
                    if self.modules[id].imports.iter().any(|x| x == m) {
                        continue;
                    }
                    match crate::stdlib::source(m) {
                        Some(src) => {
                            self.modules[id].imports.push(m.to_string());
                            if !self.modules.iter().any(|x| x.std_name.as_deref() == Some(m)) {
                                self.load_std(m, src, u.span);
                            }
                        }
                        None => self.diags.push(
                            Diagnostic::error("check::unknown-module", format!("there is no module `std::{m}`"))
                                .label(u.path[1].span, "unknown module")
                                .help(format!("the standard modules are: {available}")),
                        ),
                    }
                }
                _ => self.diags.push(
                    Diagnostic::error("check::bad-use", "only standard modules can be imported: `use std::NAME`")
                        .label(u.span, "not a standard module path")
                        .help(format!("the standard modules are: {available}")),
                ),
            }
        }
        id
    }

    fn load_std(&mut self, name: &str, src: &'static str, at: Span) {
        let file = self.sources.add(format!("std/{name}.tsr"), src);
        match syntax::parse(src, file) {
            Ok(ast) => {
                self.add_module(Some(name.to_string()), ast);
            }
            Err(d) => {
                self.diags.push(d);
                self.diags.push(
                    Diagnostic::error("internal", "internal error (this is a bug in Tessera): a stdlib module does not parse")
                        .label(at, "imported here"),
                );
            }
        }
    }

    /// Finds the function a call path names, from inside module `from`.
    fn resolve_fn(&self, from: usize, path: &[ast::Ident]) -> Result<FnKey, Diagnostic> {
        let span = path[0].span.to(path[path.len() - 1].span);
        let find = |m: usize, name: &str| self.modules[m].ast.functions.iter().position(|f| f.name.name == name);
        match path {
            [name] => find(from, &name.name).map(|i| (from, i)).ok_or_else(|| {
                let mut cands: Vec<String> =
                    self.modules[from].ast.functions.iter().map(|f| f.name.name.clone()).collect();
                cands.extend(tir::Builtin::ALL.iter().map(|b| b.name().to_string()));
                let mut d = Diagnostic::error("check::unknown-fn", format!("there is no function `{}`", name.name))
                    .label(span, "not defined");
                d = match suggest(&name.name, cands.iter().map(|s| s.as_str())) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help("define it in this file, or `use std::MODULE` and call `MODULE::name`"),
                };
                d
            }),
            [m, name] => {
                let imported = self.modules[from].imports.contains(&m.name)
                    || self.modules[from].std_name.as_deref() == Some(m.name.as_str());
                let module = self.modules.iter().position(|x| x.std_name.as_deref() == Some(m.name.as_str()));
                match module {
                    Some(mi) if imported => find(mi, &name.name).map(|i| (mi, i)).ok_or_else(|| {
                        let names: Vec<String> =
                            self.modules[mi].ast.functions.iter().map(|f| f.name.name.clone()).collect();
                        Diagnostic::error(
                            "check::unknown-fn",
                            format!("module `std::{}` has no function `{}`", m.name, name.name),
                        )
                        .label(name.span, "not in this module")
                        .help(format!("its functions are: {}", names.join(", ")))
                    }),
                    _ => Err(Diagnostic::error("check::unknown-module", format!("module `{}` is not imported", m.name))
                        .label(m.span, "not imported")
                        .help(format!("add `use std::{}` at the top of the file", m.name))),
                }
            }
            _ => Err(Diagnostic::error("check::unknown-fn", "function paths have at most two parts: `module::name`")
                .label(span, "too many `::`")
                .help("call `module::name(...)` after `use std::module`")),
        }
    }

    /// Checks one function (memoised), inlining its calls. `None` if it had errors.
    fn function(&mut self, key: FnKey) -> Option<tir::Function> {
        if let Some(done) = self.done.get(&key) {
            return done.clone();
        }
        self.in_progress.push(key);
        let def = self.modules[key.0].ast.functions[key.1].clone();
        let result = func::check_fn(self, key.0, &def);
        self.in_progress.pop();
        if let Some(f) = &result {
            if let Err(e) = tir::verify(f) {
                self.diags.push(
                    Diagnostic::error("internal", format!("internal error (this is a bug in Tessera): invalid TIR: {e}"))
                        .label(def.name.span, "while checking this function"),
                );
                self.done.insert(key, None);
                return None;
            }
        }
        self.done.insert(key, result.clone());
        result
    }

    pub(crate) fn fn_name(&self, key: FnKey) -> String {
        let f = &self.modules[key.0].ast.functions[key.1].name.name;
        match &self.modules[key.0].std_name {
            Some(m) => format!("{m}::{f}"),
            None => f.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
