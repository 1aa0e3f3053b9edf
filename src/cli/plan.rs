//! `tessera plan`: the costed plan of a function or an einsum, as text, JSON, DOT or SVG.

use super::{print_text, CliError, PlanArgs, PlanFormat};
use tessera::{Module, PlanOptions};

pub(super) fn plan(args: &PlanArgs) -> Result<(), CliError> {
    let mut opts = PlanOptions { memory_limit: args.memory_limit, mul: args.mul, ..PlanOptions::default() };
    if args.no_algebra {
        opts.algebra = None;
    }
    let plan = match (&args.target.einsum, &args.target.file) {
        (Some(spec), _) => {
            let sizes: Vec<(&str, u64)> =
                args.target.sizes.iter().flat_map(|s| s.0.iter()).map(|d| (d.name.as_str(), d.size)).collect();
            tessera::plan_einsum(spec, &sizes, &opts)?
        }
        (None, Some(file)) => {
            let module = Module::from_file(file)?;
            let f = module.entry(args.target.function.as_deref())?;
            let dims: Vec<(&str, u64)> = args.target.dims.iter().map(|d| (d.name.as_str(), d.size)).collect();
            f.plan(&dims, &opts)?
        }
        (None, None) => return Err(CliError::usage("plan", "give a FILE.tsr or --einsum SPEC")),
    };
    let text = match args.format {
        PlanFormat::Text => plan.to_string(),
        PlanFormat::Json => format!("{}\n", plan.to_json()),
        PlanFormat::Dot => plan.to_dot(),
        PlanFormat::Svg => plan.to_svg(),
    };
    print_text(&text)
}
