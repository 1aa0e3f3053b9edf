//! What runs a compiled function: one enum for the Rust API, the CLI and the executor.

use std::fmt;

/// A backend: a code generator (Cranelift, LLVM) or a reference that runs no generated
/// code (the loop-IR interpreter, the reference evaluator of the typed program).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Backend {
    /// Native code from Cranelift (always built; the default).
    #[default]
    Cranelift,
    /// Native code from LLVM at O3 for the host CPU (cargo feature `llvm`).
    Llvm,
    /// PTX for NVIDIA GPUs through LLVM's NVPTX target, run with the CUDA driver and
    /// cuBLAS (cargo feature `cuda`).
    Cuda,
    /// The loop-IR interpreter: slow, simple, a reference for the generated code.
    Interp,
    /// The reference evaluator of the typed program (the oracle; no plan involved).
    Reference,
}

impl Backend {
    /// Every backend, built or not.
    pub const ALL: [Backend; 5] = [Backend::Cranelift, Backend::Llvm, Backend::Cuda, Backend::Interp, Backend::Reference];

    /// The name on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cranelift => "cranelift",
            Backend::Llvm => "llvm",
            Backend::Cuda => "cuda",
            Backend::Interp => "interp",
            Backend::Reference => "reference",
        }
    }

    /// The backend called `name`; `jit` is the old name of `cranelift`.
    pub fn from_name(name: &str) -> Option<Backend> {
        match name {
            "jit" => Some(Backend::Cranelift),
            _ => Backend::ALL.into_iter().find(|b| b.name() == name),
        }
    }

    /// Whether this build includes the backend.
    // One arm per optional backend reads better than the boolean `matches!` would be.
    #[allow(clippy::match_like_matches_macro)]
    pub fn is_built(self) -> bool {
        match self {
            Backend::Llvm => cfg!(feature = "llvm"),
            Backend::Cuda => cfg!(feature = "cuda"),
            _ => true,
        }
    }

    /// The backends of this build that generate native code.
    pub fn native() -> Vec<Backend> {
        [Backend::Cranelift, Backend::Llvm].into_iter().filter(|b| b.is_built()).collect()
    }

    /// The backends of this build that run loop programs on this machine's CPU: the
    /// native ones and the interpreter (what differential tests compare with the
    /// reference evaluator). The CUDA backend needs a GPU, so it is not among them; GPU
    /// tests add it where `TESSERA_GPU_TESTS=1`.
    pub fn executors() -> Vec<Backend> {
        let mut v = Backend::native();
        v.push(Backend::Interp);
        v
    }

    /// Whether it generates native code for the host CPU.
    pub fn is_native(self) -> bool {
        matches!(self, Backend::Cranelift | Backend::Llvm)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
            format!("unknown backend `{s}`; the backends are: {}", names.join(", "))
        })
    }
}
