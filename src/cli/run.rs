//! `tessera run`: evaluate one function of a `.tsr` file on `.npy` inputs.

use super::args::{InputArg, OutputArg};
use super::{print_text, print_warnings, read_npy, tensor_type, write_npy, CliError, RunArgs};
use std::collections::HashMap;
use std::path::Path;
use super::distributed::{inputs_ready, local, writes};
use super::npy::Ints;
use tessera::{CallOptions, DType, Function, IndexView, Module, Ranks, Tensor};

/// Reads the `.npy` file of an index input (int32 or int64).
fn read_ints(path: &Path, what: &str) -> Result<Ints, CliError> {
    super::npy::read_ints(path).map_err(|e| CliError::User {
        message: format!("cannot read {what} from `{}`: {}", path.display(), e.reason),
        help: e.help,
    })
}

pub(super) fn run(args: &RunArgs) -> Result<(), CliError> {
    super::distributed::maybe(args.distributed, "run", |ranks| run_on(args, ranks))
}

/// Runs the call; on a distributed run every failure before it reaches the other ranks
/// (`local`), and only rank 0 prints and writes.
fn run_on(args: &RunArgs, ranks: Option<&Ranks>) -> Result<(), CliError> {
    local(ranks, check_repeats(args))?;
    let module = local(ranks, Module::from_file(&args.file).map_err(CliError::from))?;
    if writes(ranks) {
        print_warnings(&module);
    }
    let function = local(ranks, module.entry(args.function.as_deref()).map_err(CliError::from))?;
    let bound = local(ranks, bind_inputs(&function, &args.inputs))?;
    let destinations = local(ranks, bind_outputs(&function, &args.outputs))?;

    let dtype = args.dtype.map(DType::from);
    let index_names = function.index_names();
    let mut tensors = Vec::with_capacity(bound.len());
    let mut ints = Vec::new();
    for input in bound {
        if index_names.contains(&input.name.as_str()) {
            let what = format!("index input `{}`", input.name);
            ints.push(local(ranks, read_ints(&input.path, &what))?);
            continue;
        }
        let t = local(ranks, read_npy(&input.path, &format!("input `{}`", input.name)))?;
        tensors.push(match dtype {
            Some(d) => t.cast(d),
            None if t.dtype() == function.dtype() => t,
            None => return local(ranks, Err(wrong_dtype(&function, input, &t))),
        });
    }
    inputs_ready(ranks, &tensors)?;
    let opts = CallOptions {
        dims: args.dims.iter().map(|d| (d.name.clone(), d.size)).collect(),
        memory_limit: args.memory_limit,
        dtype,
        backend: args.backend,
        distributed: ranks.cloned(),
        mul: args.mul,
    };
    let views: Vec<IndexView<'_>> = ints
        .iter()
        .map(|x| match x {
            Ints::I32(a) => IndexView::I32(a.view()),
            Ints::I64(a) => IndexView::I64(a.view()),
        })
        .collect();
    let outputs = function.call_tensors_with_indices(&tensors, &views, &opts)?;
    if !writes(ranks) {
        return Ok(());
    }
    let names = function.output_names();
    if outputs.len() != names.len() {
        return Err(CliError::Tessera(tessera::Error::Internal(format!(
            "function `{}` declares {} outputs but returned {}",
            function.name(),
            names.len(),
            outputs.len()
        ))));
    }

    let mut printed = Vec::new();
    for ((name, tensor), destination) in names.iter().zip(&outputs).zip(&destinations) {
        match destination {
            Some(path) => write_npy(path, &format!("output `{name}`"), tensor)?,
            None => printed.push(format!("{name}: {}\n{tensor}\n", tensor_type(tensor))),
        }
    }
    if printed.is_empty() {
        Ok(())
    } else {
        print_text(&printed.join("\n"))
    }
}

/// Rejects names given twice and inconsistent `-o` forms before any file is read.
fn check_repeats(args: &RunArgs) -> Result<(), CliError> {
    let mut inputs: HashMap<&str, &InputArg> = HashMap::new();
    for input in &args.inputs {
        if let Some(first) = inputs.insert(&input.name, input) {
            return Err(CliError::usage(
                "run",
                format!(
                    "input `{}` is given twice ({}={} and {}={})",
                    input.name,
                    first.name,
                    first.path.display(),
                    input.name,
                    input.path.display()
                ),
            ));
        }
    }
    let mut dims: HashMap<&str, u64> = HashMap::new();
    for dim in &args.dims {
        if let Some(first) = dims.insert(&dim.name, dim.size) {
            return Err(CliError::usage(
                "run",
                format!(
                    "dim `{}` is given twice (--dim {}={first} and --dim {}={})",
                    dim.name, dim.name, dim.name, dim.size
                ),
            ));
        }
    }
    let bare: Vec<&Path> = args
        .outputs
        .iter()
        .filter_map(|o| match o {
            OutputArg::Bare(p) => Some(p.as_path()),
            OutputArg::Named { .. } => None,
        })
        .collect();
    if bare.len() > 1 || (bare.len() == 1 && args.outputs.len() > 1) {
        return Err(CliError::usage(
            "run",
            format!(
                "`-o {}` has no output name, but more than one -o is given; \
                 name each output as -o NAME=PATH",
                bare[0].display()
            ),
        ));
    }
    let mut named: HashMap<&str, &Path> = HashMap::new();
    let mut paths: HashMap<&Path, &str> = HashMap::new();
    for output in &args.outputs {
        if let OutputArg::Named { name, path } = output {
            if named.insert(name, path).is_some() {
                return Err(CliError::usage(
                    "run",
                    format!("output `{name}` is given -o twice"),
                ));
            }
            if let Some(first) = paths.insert(path, name) {
                return Err(CliError::usage(
                    "run",
                    format!(
                        "outputs `{first}` and `{name}` would both be written to `{}`",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The inputs in the function's order (value inputs, then index inputs), after checking
/// that each is given exactly once.
fn bind_inputs<'a>(f: &Function<'_>, given: &'a [InputArg]) -> Result<Vec<&'a InputArg>, CliError> {
    let expected: Vec<&str> = f.input_names().into_iter().chain(f.index_names()).collect();
    for input in given {
        if !expected.contains(&input.name.as_str()) {
            let message = if expected.is_empty() {
                format!(
                    "function `{}` takes no inputs, but `{}` is given",
                    f.name(),
                    input.name
                )
            } else {
                format!(
                    "function `{}` has no input `{}`; its inputs are {}",
                    f.name(),
                    input.name,
                    list(&expected)
                )
            };
            return Err(match similar(&input.name, &expected) {
                Some(s) => CliError::with_help(message, format!("did you mean `{s}`?")),
                None => CliError::user(message),
            });
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|name| !given.iter().any(|i| i.name == *name))
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() == 1 {
            ("input", "is")
        } else {
            ("inputs", "are")
        };
        let example: Vec<String> = expected
            .iter()
            .map(|n| format!("{n}={}.npy", n.to_lowercase()))
            .collect();
        return Err(CliError::with_help(
            format!(
                "{noun} {} of function `{}` {verb} not given; it takes {}",
                list(&missing),
                f.name(),
                list(&expected)
            ),
            format!(
                "give each input as NAME=FILE.npy, e.g. `{}`",
                example.join(" ")
            ),
        ));
    }
    Ok(expected
        .iter()
        .filter_map(|name| given.iter().find(|i| i.name == *name))
        .collect())
}

/// Where each output goes: a path for `-o`, `None` to print it.
fn bind_outputs<'a>(
    f: &Function<'_>,
    given: &'a [OutputArg],
) -> Result<Vec<Option<&'a Path>>, CliError> {
    let names = f.output_names();
    let mut destinations = vec![None; names.len()];
    for output in given {
        match output {
            OutputArg::Bare(path) => {
                if names.len() != 1 {
                    let example: Vec<String> = names
                        .iter()
                        .map(|n| format!("-o {n}={}.npy", n.to_lowercase()))
                        .collect();
                    return Err(CliError::with_help(
                        format!(
                            "function `{}` has {} outputs ({}), so `-o {}` must name one",
                            f.name(),
                            names.len(),
                            list(&names),
                            path.display()
                        ),
                        format!("write them as `{}`", example.join(" ")),
                    ));
                }
                destinations[0] = Some(path.as_path());
            }
            OutputArg::Named { name, path } => match names.iter().position(|n| n == name) {
                Some(i) => destinations[i] = Some(path.as_path()),
                None => {
                    let message = format!(
                        "function `{}` has no output `{name}`; its outputs are {}",
                        f.name(),
                        list(&names)
                    );
                    return Err(match similar(name, &names) {
                        Some(s) => CliError::with_help(message, format!("did you mean `{s}`?")),
                        None => CliError::user(message),
                    });
                }
            },
        }
    }
    Ok(destinations)
}

fn wrong_dtype(f: &Function<'_>, input: &InputArg, t: &Tensor) -> CliError {
    let found = t.dtype();
    CliError::with_help(
        format!(
            "input `{}` in `{}` is {}, but function `{}` takes {}",
            input.name,
            input.path.display(),
            super::npy::numpy_name(found),
            f.name(),
            f.dtype()
        ),
        format!(
            "pass `--dtype {found}` to evaluate in {found}, or `--dtype {}` to cast the inputs to {}",
            f.dtype(),
            f.dtype()
        ),
    )
}

/// `A`, `B` and `C`.
fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => "none".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// A name that differs from `name` only in case, as a likely typo.
fn similar<'n>(name: &str, names: &[&'n str]) -> Option<&'n str> {
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_prose() {
        assert_eq!(list(&[]), "none");
        assert_eq!(list(&["A"]), "`A`");
        assert_eq!(list(&["A", "B", "C"]), "`A`, `B` and `C`");
    }

    #[test]
    fn similar_names_ignore_case() {
        assert_eq!(similar("q", &["Q", "K"]), Some("Q"));
        assert_eq!(similar("x", &["Q", "K"]), None);
    }
}
