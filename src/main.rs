//! The `tessera` command-line tool; see `tessera --help`.

mod cli;

// Planning and compiling allocate many small objects; mimalloc serves them about twice
// as fast as glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
