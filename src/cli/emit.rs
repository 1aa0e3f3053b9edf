//! `tessera emit`: print the text form of a compiler stage.

use super::{print_text, CliError, EmitArgs, Stage};
use tessera::Module;

pub(super) fn emit(args: &EmitArgs) -> Result<(), CliError> {
    // The AST is one tree per file, so naming a function is a usage mistake; report it
    // before reading the file.
    if args.stage == Stage::Ast {
        if let Some(name) = &args.function {
            return Err(CliError::usage(
                "emit",
                format!("--fn {name} selects a function, but --stage ast prints the whole file"),
            ));
        }
    }
    let module = Module::from_file(&args.file)?;
    let text = match args.stage {
        Stage::Ast => module.emit_ast(),
        Stage::Tir | Stage::Graph | Stage::Plan | Stage::Loops | Stage::Clif | Stage::Llvm | Stage::Ptx => {
            let functions = match &args.function {
                Some(name) => vec![module.function(name)?],
                None => module
                    .function_names()
                    .into_iter()
                    .map(|name| module.function(name))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let dims: Vec<(&str, u64)> = args.dims.iter().map(|d| (d.name.as_str(), d.size)).collect();
            let mut texts = Vec::new();
            for f in &functions {
                texts.push(with_newline(match args.stage {
                    Stage::Graph => format!("fn {}\n{}", f.name(), f.emit_graph()),
                    Stage::Plan => f.plan(&dims, &tessera::PlanOptions { mul: args.mul, ..Default::default() })?.to_string(),
                    Stage::Loops => f.compile_dims(&dims, &interp(args.mul))?.program().to_string(),
                    Stage::Clif => code(f, &dims, tessera::Backend::Cranelift, args.mul)?,
                    Stage::Llvm => code(f, &dims, tessera::Backend::Llvm, args.mul)?,
                    Stage::Ptx => code(f, &dims, tessera::Backend::Cuda, args.mul)?,
                    _ => f.emit_tir(),
                }));
            }
            texts.join("\n")
        }
    };
    print_text(&with_newline(text))
}

/// The code `backend` generates for the function's loop program. The program comes
/// from the interpreter's compilation, which generates no code of its own, so that only
/// the printing backend runs.
fn code(f: &tessera::Function<'_>, dims: &[(&str, u64)], backend: tessera::Backend, mul: tessera::MulMode) -> Result<String, CliError> {
    Ok(f.compile_dims(dims, &interp(mul))?.emit_code(backend)?)
}

/// Options that compile down to the loop program and generate no code.
fn interp(mul: tessera::MulMode) -> tessera::CallOptions {
    tessera::CallOptions { backend: tessera::Backend::Interp, mul, ..Default::default() }
}

fn with_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}
