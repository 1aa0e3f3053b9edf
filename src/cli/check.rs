//! `tessera check`: compile a file and report its diagnostics.

use super::{eprint_text, print_warnings, CheckArgs, CliError};
use tessera::Module;

pub(super) fn check(args: &CheckArgs) -> Result<(), CliError> {
    let module = Module::from_file(&args.file)?;
    print_warnings(&module);
    let functions = module.function_names().len();
    let warnings = module.warnings().len();
    eprint_text(&format!(
        "ok: {}: {} checked, {}\n",
        args.file.display(),
        plural(functions, "function"),
        plural(warnings, "warning"),
    ));
    Ok(())
}

pub(super) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
