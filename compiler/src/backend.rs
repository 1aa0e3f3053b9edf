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
    /// The loop-IR interpreter: slow, simple, a reference for the generated code.
    Interp,
    /// The reference evaluator of the typed program (the oracle; no plan involved).
    Reference,
}

impl Backend {
    /// Every backend, built or not.
    pub const ALL: [Backend; 4] = [Backend::Cranelift, Backend::Llvm, Backend::Interp, Backend::Reference];

    /// The name on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cranelift => "cranelift",
            Backend::Llvm => "llvm",
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
    pub fn is_built(self) -> bool {
        self != Backend::Llvm || cfg!(feature = "llvm")
    }

    /// The backends of this build that generate native code.
    pub fn native() -> Vec<Backend> {
        [Backend::Cranelift, Backend::Llvm].into_iter().filter(|b| b.is_built()).collect()
    }

    /// The backends of this build that run loop programs: the native ones and the
    /// interpreter (what differential tests compare with the reference evaluator).
    pub fn executors() -> Vec<Backend> {
        let mut v = Backend::native();
        v.push(Backend::Interp);
        v
    }

    /// Whether it generates native code.
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
