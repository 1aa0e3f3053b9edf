//! Prints the plan Tessera finds for a function, in the three forms it has: the text
//! table people read, JSON for tools, and DOT for Graphviz (`dot -Tsvg`).
//!
//! The default is LoRA from `std::lowrank` at n = 512, d = o = 256, r = 8. Another stdlib
//! function and its sizes can be named, dims not given defaulting to 64:
//! `cargo run --release --example inspect_plan -- kron::matvec m1=32 n1=32`.

mod common;

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

/// Parses `NAME=SIZE`.
fn parse_dim(arg: &str) -> Result<(String, u64), String> {
    let (name, size) = arg.split_once('=').ok_or(format!("expected NAME=SIZE, such as n=64; got `{arg}`"))?;
    let size = size.parse::<u64>().map_err(|_| format!("the size in `{arg}` is not a whole number"))?;
    Ok((name.to_string(), size))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, given): (String, Vec<(String, u64)>) = match args.split_first() {
        None => {
            ("lowrank::lora".into(), vec![("n".into(), 512), ("d".into(), 256), ("o".into(), 256), ("r".into(), 8)])
        }
        Some((t, rest)) => (t.clone(), rest.iter().map(|a| parse_dim(a)).collect::<Result<_, _>>()?),
    };
    let Some((module_name, function_name)) = target.split_once("::") else {
        return Err(format!("expected MODULE::FUNCTION, such as lowrank::lora; got `{target}`").into());
    };
    let module = tessera::Module::stdlib(module_name)?;
    let f = module.function(function_name)?;
    let mut dims: Vec<(&str, u64)> = Vec::new();
    for d in &f.tir().dims {
        let size = given.iter().find(|(n, _)| *n == d.name).map_or(64, |(_, s)| *s);
        dims.push((d.name.as_str(), size));
    }
    // Names that are not dims of the function are a mistake worth reporting.
    if let Some((bad, _)) = given.iter().find(|(n, _)| !dims.iter().any(|(d, _)| d == n)) {
        let names: Vec<&str> = dims.iter().map(|(d, _)| *d).collect();
        return Err(format!("`{target}` has no dim `{bad}`; its dims are: {}", names.join(", ")).into());
    }

    println!("== std::{target}\n");
    println!("{}", f.emit_tir());
    let plan = f.plan_for(&dims)?;
    println!("== the plan, as text\n\n{plan}");
    println!("== the plan, as JSON\n\n{}\n", plan.to_json());
    println!("== the plan, as DOT\n\n{}", plan.to_dot());
    Ok(())
}
