//! Prints what Tessera makes of a program, in the forms a person or a tool reads.
//!
//! Today that is the typed program (TIR) and the contraction graph of each statement,
//! as text and as DOT (render with `dot -Tsvg`). The default program is LoRA from
//! `std::lowrank`; pass `MODULE::FUNCTION` to inspect another stdlib function, e.g.
//! `cargo run --release --example inspect_plan -- kron::matvec`.

mod common;

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "lowrank::lora".to_string());
    let Some((module_name, function_name)) = target.split_once("::") else {
        return Err(format!("expected MODULE::FUNCTION, such as lowrank::lora; got `{target}`").into());
    };
    let module = tessera::Module::stdlib(module_name)?;
    let f = module.function(function_name)?;

    println!("== std::{target}: the typed program (TIR)\n");
    println!("{}", f.emit_tir());

    let graph = tessera_compiler::graph::build(f.tir());
    println!("== the contraction graph, as text\n");
    println!("{}", graph.to_text(f.tir()));
    println!("== the contraction graph, as DOT\n");
    println!("{}", graph.to_dot(f.tir()));
    Ok(())
}
