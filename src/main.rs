//! The `tessera` command-line tool; see `tessera --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
