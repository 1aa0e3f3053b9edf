//! The `tessera` command line: argument definitions, dispatch, error reporting and exit
//! codes. Each subcommand lives in its own module.

mod args;
mod check;
mod distributed;
mod einsum;
mod emit;
mod npy;
mod bench;
mod plan;
mod run;

use args::{DimArg, InputArg, OutputArg};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tessera::DType;

/// Exit status for errors in the user's input (source, files, names, sizes).
const EXIT_USER: u8 = 1;
/// Exit status for command-line usage errors; clap uses the same for its own.
const EXIT_USAGE: u8 = 2;
/// Exit status for internal errors, which are always bugs in Tessera.
const EXIT_INTERNAL: u8 = 3;

const TOP_EXAMPLES: &str = "\
Examples:
  tessera check model.tsr
  tessera emit --stage tir model.tsr --fn matmul
  tessera run model.tsr --fn matmul A=a.npy B=b.npy -o c.npy
  tessera einsum 'ij,jk->ik' a.npy b.npy
  tessera plan model.tsr --fn attention --dim n=4096 --dim d=64
  tessera plan --einsum 'ij,jk,kl->il' --sizes i=10,j=100,k=5,l=50
  tessera bench model.tsr --fn attention --dim n=1024 --dim d=64";

/// Tessera: compile and evaluate einsum-style tensor programs.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, after_help = TOP_EXAMPLES)]
#[command(max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(CheckArgs),
    Emit(EmitArgs),
    Run(RunArgs),
    Einsum(EinsumArgs),
    Plan(PlanArgs),
    Bench(BenchArgs),
}

/// Check a .tsr file and report its errors and warnings.
///
/// Diagnostics go to stderr. The exit status is 1 if the file has errors, 0 otherwise.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  tessera check model.tsr")]
struct CheckArgs {
    /// The .tsr source file.
    #[arg(value_name = "FILE.tsr")]
    file: PathBuf,
}

/// Print an intermediate representation of a .tsr file.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tessera emit --stage ast model.tsr\n  \
                        tessera emit --stage tir model.tsr --fn matmul")]
struct EmitArgs {
    /// The stage whose text form to print.
    #[arg(long, value_enum)]
    stage: Stage,
    /// The .tsr source file.
    #[arg(value_name = "FILE.tsr")]
    file: PathBuf,
    /// Print only this function (for per-function stages) [default: all functions].
    #[arg(long = "fn", value_name = "NAME")]
    function: Option<String>,
    /// For --stage plan, loops, clif and llvm: the size of each dim (repeatable), e.g. --dim n=4096.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = args::parse_dim,
          allow_hyphen_values = true)]
    dims: Vec<DimArg>,
    /// For --stage plan and later: how products are computed: exact, or L-Mul (docs/lmul.md) keeping every
    /// mantissa bit (lmul) or M of them (lmul3, lmul4, any lmulM up to 52); contractions
    /// then run as generated loop kernels instead of GEMM calls.
    #[arg(long, value_name = "MODE", value_parser = args::parse_mul, default_value = "exact")]
    mul: tessera::MulMode,
}

/// A printable stage of the compiler pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// The syntax tree of the file, as parsed.
    Ast,
    /// The typed program of each function: shapes, index ranges, reductions.
    Tir,
    /// Each statement's contraction graph: tensors, shared indices, components.
    Graph,
    /// The costed plan of each function (needs --dim for every dim).
    Plan,
    /// The loop program: GEMM calls and fused loop kernels over buffers (needs --dim).
    Loops,
    /// The Cranelift IR of each loop kernel (needs --dim).
    Clif,
    /// The LLVM IR of each loop kernel (needs --dim and a build with `--features llvm`).
    Llvm,
    /// The PTX of each loop kernel for NVIDIA GPUs, sm_80 (needs --dim and a build with
    /// `--features cuda`; no GPU needed).
    Ptx,
}

/// Evaluate a function of a .tsr file on .npy inputs.
///
/// Give every input of the function once, as NAME=FILE.npy. Outputs named with -o
/// are written as C-order .npy files of the evaluation dtype; the others are printed.
// Verbatim keeps the line breaks: clap is built without terminal-width wrapping.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  \
    tessera run matmul.tsr A=a.npy B=b.npy\n  \
    tessera run model.tsr --fn attention Q=q.npy K=k.npy V=v.npy -o out.npy\n  \
    tessera run model.tsr --fn stats X=x.npy -o mean=mean.npy -o var=var.npy\n  \
    tessera run ones.tsr --dim n=4 --dtype f64"
)]
struct RunArgs {
    /// The .tsr source file.
    #[arg(value_name = "FILE.tsr")]
    file: PathBuf,
    /// The inputs, one NAME=FILE.npy for each input of the function.
    #[arg(value_name = "NAME=FILE.npy", value_parser = args::parse_input)]
    inputs: Vec<InputArg>,
    /// The function to run [default: the only function, or `main`].
    #[arg(long = "fn", value_name = "NAME")]
    function: Option<String>,
    /// The size of a dim that the inputs do not fix (repeatable), e.g. --dim n=4096.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = args::parse_dim,
          allow_hyphen_values = true)]
    dims: Vec<DimArg>,
    /// Evaluate in this dtype, casting the inputs to it [default: the function's dtype].
    #[arg(long, value_enum, value_name = "DTYPE")]
    dtype: Option<DTypeArg>,
    /// The backend that evaluates the function.
    #[arg(long, value_name = "BACKEND", value_parser = backend_parser(), default_value = "cranelift")]
    backend: tessera::Backend,
    /// How products are computed: exact, or L-Mul (docs/lmul.md) keeping every
    /// mantissa bit (lmul) or M of them (lmul3, lmul4, any lmulM up to 52); contractions
    /// then run as generated loop kernels instead of GEMM calls.
    #[arg(long, value_name = "MODE", value_parser = args::parse_mul, default_value = "exact")]
    mul: tessera::MulMode,
    /// Bytes allowed for the intermediates alive at once and for each output, e.g.
    /// 512MiB, 4GiB, 1e9; intermediates over it run in slices.
    // Hyphens are allowed so that `-1` reaches the parser and gets its message.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size, default_value = "4GiB",
          allow_hyphen_values = true)]
    memory_limit: u64,
    /// Spread the slices of the memory limit's slice loops over MPI ranks: start with
    /// `mpirun -n R`; every rank reads the inputs, rank 0 writes the outputs. Needs a
    /// build with the feature `mpi`; outside mpirun it runs as one process.
    #[arg(long)]
    distributed: bool,
    /// Write outputs to .npy files (repeatable): `-o out.npy` for the only output,
    /// or `-o NAME=out.npy` for each output to save; the others are printed.
    #[arg(short = 'o', long = "output", value_name = "PATH|NAME=PATH",
          value_parser = args::parse_output, verbatim_doc_comment)]
    outputs: Vec<OutputArg>,
}

/// Evaluate a numpy einsum expression on .npy operands.
///
/// The result is float64 if any operand is float64, else float32.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    tessera einsum 'ij,jk->ik' a.npy b.npy -o c.npy\n  \
    tessera einsum 'ii->i' m.npy\n  \
    tessera einsum '...ij->...ji' batch.npy -o t.npy")]
struct EinsumArgs {
    /// The einsum subscripts, as numpy spells them, e.g. 'ij,jk->ik'.
    // A spec may start with `-` (`->` sums a 0-d operand), so hyphens are allowed here.
    #[arg(value_name = "SPEC", allow_hyphen_values = true)]
    spec: String,
    /// The operands, one .npy file per term of SPEC.
    #[arg(value_name = "FILE.npy", required = true)]
    operands: Vec<PathBuf>,
    /// Write the result to this .npy file instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: Option<PathBuf>,
    /// Cast every operand to this dtype first [default: float64 if any operand is].
    #[arg(long, value_enum, value_name = "DTYPE")]
    dtype: Option<DTypeArg>,
    /// Bytes allowed for the intermediates alive at once and for each result, e.g.
    /// 512MiB, 4GiB, 1e9; intermediates over it run in slices.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size, default_value = "4GiB",
          allow_hyphen_values = true)]
    memory_limit: u64,
    /// Spread the slices of the memory limit's slice loops over MPI ranks: start with
    /// `mpirun -n R`; every rank reads the inputs, rank 0 writes the outputs. Needs a
    /// build with the feature `mpi`; outside mpirun it runs as one process.
    #[arg(long)]
    distributed: bool,
    /// The backend that evaluates the einsum.
    #[arg(long, value_name = "BACKEND", value_parser = backend_parser(), default_value = "cranelift")]
    backend: tessera::Backend,
    /// How products are computed: exact, or L-Mul (docs/lmul.md) keeping every
    /// mantissa bit (lmul) or M of them (lmul3, lmul4, any lmulM up to 52); contractions
    /// then run as generated loop kernels instead of GEMM calls.
    #[arg(long, value_name = "MODE", value_parser = args::parse_mul, default_value = "exact")]
    mul: tessera::MulMode,
}

/// Show the plan Tessera finds for a function or an einsum: each step with its FLOPs
/// and result size, against the naive cost.
///
/// Every dim of the function needs a size (--dim). FLOPs follow opt_einsum: a pairwise
/// contraction costs the product of its index sizes, times 2 when it sums an index;
/// elementwise work costs one per operation per element. "naive" evaluates each
/// statement as one loop nest over all its indices.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  \
    tessera plan model.tsr --fn attention --dim n=4096 --dim d=64\n  \
    tessera plan model.tsr --dim n=512 --format json\n  \
    tessera plan --einsum 'ij,jk,kl->il' --sizes i=10,j=100,k=5,l=50\n  \
    tessera plan model.tsr --dim n=4096 --memory-limit 64MiB"
)]
struct PlanArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Slice loops so that no intermediate exceeds this size, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size, allow_hyphen_values = true)]
    memory_limit: Option<u64>,
    /// Skip the algebraic rewriting (egg) and only order contractions. (A single einsum
    /// skips it anyway: no rewrite beats the contraction order of a lone product.)
    #[arg(long)]
    no_algebra: bool,
    /// How products are computed: exact, or L-Mul (docs/lmul.md) keeping every
    /// mantissa bit (lmul) or M of them (lmul3, lmul4, any lmulM up to 52); contractions
    /// then run as generated loop kernels instead of GEMM calls.
    #[arg(long, value_name = "MODE", value_parser = args::parse_mul, default_value = "exact")]
    mul: tessera::MulMode,
}

/// What `plan` and `bench` work on: a function of a file at given dims, or an einsum at
/// given label sizes.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The .tsr source file (or use --einsum).
    #[arg(value_name = "FILE.tsr", required_unless_present = "einsum", conflicts_with = "einsum")]
    file: Option<PathBuf>,
    /// A numpy einsum instead of a file, e.g. 'ij,jk->ik' (with --sizes).
    #[arg(long, value_name = "SPEC", allow_hyphen_values = true, requires = "sizes")]
    einsum: Option<String>,
    /// Label sizes for --einsum, e.g. i=64,j=32,k=8. Labels are opt_einsum's: any one
    /// character but , . - > and whitespace (×=3 and 1=4 are sizes too).
    #[arg(long, value_name = "L=SIZE,...", value_parser = args::parse_sizes)]
    sizes: Option<args::SizesArg>,
    /// The function [default: the only function, or `main`].
    #[arg(long = "fn", value_name = "NAME")]
    function: Option<String>,
    /// The size of each dim of the function (repeatable), e.g. --dim n=4096.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = args::parse_dim,
          allow_hyphen_values = true)]
    dims: Vec<DimArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// An aligned table for people.
    Text,
    /// JSON with flops, naive_flops, peak_bytes, search_ms, steps and (for an einsum) path,
    /// the contraction order in opt_einsum's format.
    Json,
    /// A Graphviz DOT graph of the steps.
    Dot,
    /// An SVG drawing of the steps (boxes coloured and sized by FLOPs, edges labelled
    /// with the tensors' shapes), rendered without Graphviz.
    Svg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DTypeArg {
    /// 32-bit floats (numpy float32).
    F32,
    /// 64-bit floats (numpy float64).
    F64,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F64 => DType::F64,
        }
    }
}

/// `--backend`: the names of `tessera::Backend`, with `jit` accepted for `cranelift`.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = tessera::Backend> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let help = |b: tessera::Backend| match b {
        tessera::Backend::Cranelift => "Native code from Cranelift, GEMM calls, on all cores",
        tessera::Backend::Llvm => "Native code from LLVM at O3 for this CPU (a build with --features llvm)",
        tessera::Backend::Cuda => "NVIDIA GPU: PTX through LLVM, cuBLAS GEMMs (a build with --features cuda, and a GPU)",
        tessera::Backend::Interp => "The loop-IR interpreter (slow; a reference for the native code)",
        tessera::Backend::Reference => "The reference evaluator of the typed program (the oracle)",
    };
    let values = tessera::Backend::ALL.map(|b| {
        let v = PossibleValue::new(b.name()).help(help(b));
        if b == tessera::Backend::Cranelift {
            v.alias("jit")
        } else {
            v
        }
    });
    PossibleValuesParser::new(values).map(|s| tessera::Backend::from_name(&s).unwrap_or_default())
}

/// Time a function (or an einsum) on seeded random inputs.
///
/// Compiles once, warms up, then calls it until --min-time has passed (at least 5
/// calls) and reports the median and fastest call, GFLOP/s from the plan's FLOPs and
/// the memory a call allocates. Every dim needs a size (--dim), as for `plan`.
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  \
    tessera bench model.tsr --fn matmul --dim m=1024 --dim k=1024 --dim n=1024\n  \
    tessera bench stdlib/norm.tsr --fn layernorm --dim b=4096 --dim d=1024 --format json\n  \
    tessera bench --einsum 'bij,bjk->bik' --sizes b=64,i=128,j=128,k=128 --dtype f64"
)]
struct BenchArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Run in this dtype [default: the function's; f32 for --einsum].
    #[arg(long, value_enum, value_name = "DTYPE")]
    dtype: Option<DTypeArg>,
    /// The backend to time.
    #[arg(long, value_name = "BACKEND", value_parser = backend_parser(), default_value = "cranelift")]
    backend: tessera::Backend,
    /// How products are computed: exact, or L-Mul (docs/lmul.md) keeping every
    /// mantissa bit (lmul) or M of them (lmul3, lmul4, any lmulM up to 52); contractions
    /// then run as generated loop kernels instead of GEMM calls.
    #[arg(long, value_name = "MODE", value_parser = args::parse_mul, default_value = "exact")]
    mul: tessera::MulMode,
    /// Keep calling for at least this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, allow_hyphen_values = true)]
    min_time: f64,
    /// Bytes allowed for the intermediates alive at once and for each output, e.g.
    /// 512MiB; a plan whose intermediates exceed it runs its slice loops.
    #[arg(long, value_name = "SIZE", value_parser = args::parse_size, default_value = "4GiB",
          allow_hyphen_values = true)]
    memory_limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
    format: BenchFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BenchFormat {
    /// Lines for people.
    Text,
    /// One JSON object: plan_ms, compile_ms (lower_ms + codegen_ms), median_ms, min_ms, runs, flops, gflops, peak_bytes, ...
    Json,
}

/// Everything a subcommand can fail with.
#[derive(Debug)]
enum CliError {
    /// An error from the library, rendered by it.
    Tessera(tessera::Error),
    /// A user error found by the command line itself (files, names).
    User {
        message: String,
        help: Option<String>,
    },
    /// A usage error found after clap parsed the arguments (e.g. a name given twice).
    Usage(clap::Error),
    /// stdout was closed early (e.g. piped into `head`); stop without a message.
    BrokenPipe,
}

impl CliError {
    fn user(message: impl Into<String>) -> CliError {
        CliError::User {
            message: message.into(),
            help: None,
        }
    }

    fn with_help(message: impl Into<String>, help: impl Into<String>) -> CliError {
        CliError::User {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// A usage error reported like clap's own, with the subcommand's usage line.
    fn usage(subcommand: &str, message: impl std::fmt::Display) -> CliError {
        let mut cmd = Cli::command();
        cmd.build();
        let err = match cmd.find_subcommand_mut(subcommand) {
            Some(sub) => sub.error(clap::error::ErrorKind::ArgumentConflict, message),
            None => cmd.error(clap::error::ErrorKind::ArgumentConflict, message),
        };
        CliError::Usage(err)
    }

    fn exit_code(&self) -> u8 {
        match self {
            CliError::Tessera(tessera::Error::Internal(_)) => EXIT_INTERNAL,
            CliError::Tessera(_) | CliError::User { .. } => EXIT_USER,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::BrokenPipe => 0,
        }
    }

    /// The error as one line, for other ranks of a distributed run.
    fn message(&self) -> String {
        match self {
            CliError::Tessera(e) => e.to_string(),
            CliError::User { message, .. } => message.clone(),
            CliError::Usage(e) => e.to_string().lines().next().unwrap_or("a usage error").to_string(),
            CliError::BrokenPipe => "stdout was closed".into(),
        }
    }

    fn report(&self, color: bool) {
        let text = match self {
            CliError::Tessera(e) => e.render(color),
            CliError::User { message, help } => match help {
                Some(help) => format!("error: {message}\nhelp: {help}\n"),
                None => format!("error: {message}\n"),
            },
            CliError::Usage(e) => {
                // clap styles its own message; printing can only fail if stderr is gone.
                let _ = e.print();
                return;
            }
            CliError::BrokenPipe => return,
        };
        eprint_text(&text);
    }
}

impl From<tessera::Error> for CliError {
    fn from(e: tessera::Error) -> CliError {
        CliError::Tessera(e)
    }
}

/// Whether diagnostics on stderr get colors: only on a terminal, and never when
/// NO_COLOR is set to a non-empty value (https://no-color.org).
fn stderr_color() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stderr().is_terminal()
}

/// Writes to stderr. A closed stderr leaves nowhere to report anything, so failures
/// are ignored rather than turned into panics as `eprint!` would.
fn eprint_text(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Writes to stdout, reporting a closed pipe as [`CliError::BrokenPipe`].
fn print_text(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                CliError::BrokenPipe
            } else {
                CliError::user(format!("cannot write to stdout: {}", npy::io_reason(&e)))
            }
        })
}

/// Parses the command line and runs it. Panics are caught and reported as internal
/// errors (exit 3), so no input ends in Rust's panic exit status 101.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprint_text(&format!(
            "error: internal error (this is a bug in Tessera; please report it with the \
             command and its input files): {info}\n"
        ));
    }));
    ExitCode::from(guarded(run_cli))
}

/// Runs `f`, turning a panic (already reported by the panic hook) into exit status 3.
fn guarded(f: impl FnOnce() -> u8 + std::panic::UnwindSafe) -> u8 {
    std::panic::catch_unwind(f).unwrap_or(EXIT_INTERNAL)
}

fn run_cli() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are "errors" with exit status 0; printing them can only
            // fail if the stream is gone, which leaves nothing to report.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Check(a) => check::check(&a),
        Command::Emit(a) => emit::emit(&a),
        Command::Run(a) => run::run(&a),
        Command::Einsum(a) => einsum::einsum(&a),
        Command::Plan(a) => plan::plan(&a),
        Command::Bench(a) => bench::bench(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            e.report(stderr_color());
            e.exit_code()
        }
    }
}

/// Prints the module's warnings, if any, to stderr.
fn print_warnings(module: &tessera::Module) {
    if !module.warnings().is_empty() {
        eprint_text(&module.render_warnings(stderr_color()));
    }
}

/// A tensor's type as `.tsr` spells it: `f32[2, 3]`.
fn tensor_type(t: &tessera::Tensor) -> String {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype(), dims.join(", "))
}

/// Reads one `.npy` file, naming it and what it was for in any error.
fn read_npy(path: &std::path::Path, what: &str) -> Result<tessera::Tensor, CliError> {
    npy::read_tensor(path).map_err(|e| CliError::User {
        message: format!("cannot read {what} from `{}`: {}", path.display(), e.reason),
        help: e.help,
    })
}

/// Writes one `.npy` file, naming it and what it held in any error.
fn write_npy(path: &std::path::Path, what: &str, t: &tessera::Tensor) -> Result<(), CliError> {
    npy::write_tensor(path, t).map_err(|e| CliError::User {
        message: format!("cannot write {what} to `{}`: {}", path.display(), e.reason),
        help: e.help,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn panics_exit_with_3() {
        assert_eq!(guarded(|| panic!("a deliberate panic")), EXIT_INTERNAL);
        assert_eq!(guarded(|| 0), 0);
    }

    #[test]
    fn internal_errors_exit_with_3() {
        let e = CliError::Tessera(tessera::Error::Internal("broken invariant".into()));
        assert_eq!(e.exit_code(), EXIT_INTERNAL);
        assert_eq!(
            CliError::Tessera(tessera::Error::Input("x".into())).exit_code(),
            EXIT_USER
        );
    }

    #[test]
    fn usage_errors_exit_with_2() {
        let e = CliError::usage("run", "input `A` is given twice");
        assert_eq!(e.exit_code(), EXIT_USAGE);
        let CliError::Usage(e) = e else {
            panic!("not a usage error")
        };
        assert!(e.to_string().contains("input `A` is given twice"));
        assert!(e.to_string().contains("tessera run"), "{e}");
    }
}
