//! Transcendental functions as calls into Rust (`JitOptions::inline_math = false`), for
//! exact std results where the vectorised `math.rs` polynomials are not wanted. Each
//! helper evaluates what the loop interpreter does, so results agree bit for bit.

use super::CodegenError;
use cranelift_codegen::ir::{types, AbiParam, Signature, Type};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

pub use super::math::MathFn;

const ALL: [MathFn; 7] = MathFn::ALL;

macro_rules! helpers {
    ($($name:ident: $t:ty, |$x:ident $(, $y:ident)?| $body:expr;)*) => {
        $(
            extern "C" fn $name($x: $t $(, $y: $t)?) -> $t {
                $body
            }
        )*
    };
}

helpers! {
    exp_f32: f32, |x| x.exp();
    log_f32: f32, |x| x.ln();
    tanh_f32: f32, |x| x.tanh();
    sigmoid_f32: f32, |x| 1.0 / (1.0 + (-x).exp());
    sin_f32: f32, |x| x.sin();
    cos_f32: f32, |x| x.cos();
    pow_f32: f32, |x, y| x.powf(y);
    exp_f64: f64, |x| x.exp();
    log_f64: f64, |x| x.ln();
    tanh_f64: f64, |x| x.tanh();
    sigmoid_f64: f64, |x| 1.0 / (1.0 + (-x).exp());
    sin_f64: f64, |x| x.sin();
    cos_f64: f64, |x| x.cos();
    pow_f64: f64, |x, y| x.powf(y);
}

/// The symbol name of a helper.
fn name(f: MathFn, f64: bool) -> String {
    format!("tessera_{:?}_{}", f, if f64 { "f64" } else { "f32" }).to_lowercase()
}

/// The address of the std helper for `f` on f64 (`wide`) or f32 scalars; the LLVM
/// backend calls the same helpers.
pub(crate) fn address(f: MathFn, wide: bool) -> *const u8 {
    match (f, wide) {
        (MathFn::Exp, false) => exp_f32 as *const u8,
        (MathFn::Log, false) => log_f32 as *const u8,
        (MathFn::Tanh, false) => tanh_f32 as *const u8,
        (MathFn::Sigmoid, false) => sigmoid_f32 as *const u8,
        (MathFn::Sin, false) => sin_f32 as *const u8,
        (MathFn::Cos, false) => cos_f32 as *const u8,
        (MathFn::Pow, false) => pow_f32 as *const u8,
        (MathFn::Exp, true) => exp_f64 as *const u8,
        (MathFn::Log, true) => log_f64 as *const u8,
        (MathFn::Tanh, true) => tanh_f64 as *const u8,
        (MathFn::Sigmoid, true) => sigmoid_f64 as *const u8,
        (MathFn::Sin, true) => sin_f64 as *const u8,
        (MathFn::Cos, true) => cos_f64 as *const u8,
        (MathFn::Pow, true) => pow_f64 as *const u8,
    }
}

/// Every helper's symbol and address, for `JITBuilder::symbol`.
pub(super) fn symbols() -> Vec<(String, *const u8)> {
    let mut out = Vec::new();
    for f in ALL {
        out.push((name(f, false), address(f, false)));
        out.push((name(f, true), address(f, true)));
    }
    out
}

/// The helpers declared in a module (imports resolved against [`symbols`]).
pub(super) struct Helpers {
    /// Indexed by `ALL` position, then 0 for f32 and 1 for f64.
    ids: Vec<[FuncId; 2]>,
}

impl Helpers {
    pub fn declare(m: &mut JITModule) -> Result<Helpers, CodegenError> {
        let mut ids = Vec::new();
        for f in ALL {
            let mut pair = Vec::new();
            for (wide, ty) in [(false, types::F32), (true, types::F64)] {
                let mut sig = Signature::new(m.isa().default_call_conv());
                let arity = if f == MathFn::Pow { 2 } else { 1 };
                sig.params
                    .extend(std::iter::repeat_n(AbiParam::new(ty), arity));
                sig.returns.push(AbiParam::new(ty));
                let id = m
                    .declare_function(&name(f, wide), Linkage::Import, &sig)
                    .map_err(|e| CodegenError::Failed { backend: "Cranelift", message: e.to_string() })?;
                pair.push(id);
            }
            ids.push([pair[0], pair[1]]);
        }
        Ok(Helpers { ids })
    }

    /// The helper for `f` on scalars of type `ty` (F32 or F64).
    pub fn get(&self, f: MathFn, ty: Type) -> FuncId {
        let k = ALL.iter().position(|&x| x == f).unwrap_or(0);
        self.ids[k][usize::from(ty == types::F64)]
    }
}
