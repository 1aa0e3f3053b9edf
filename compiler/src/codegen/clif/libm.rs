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

/// Every helper's symbol and address, for `JITBuilder::symbol`.
pub(super) fn symbols() -> Vec<(String, *const u8)> {
    let f32s: [*const u8; 7] = [
        exp_f32 as *const u8,
        log_f32 as *const u8,
        tanh_f32 as *const u8,
        sigmoid_f32 as *const u8,
        sin_f32 as *const u8,
        cos_f32 as *const u8,
        pow_f32 as *const u8,
    ];
    let f64s: [*const u8; 7] = [
        exp_f64 as *const u8,
        log_f64 as *const u8,
        tanh_f64 as *const u8,
        sigmoid_f64 as *const u8,
        sin_f64 as *const u8,
        cos_f64 as *const u8,
        pow_f64 as *const u8,
    ];
    let mut out = Vec::new();
    for (k, f) in ALL.iter().enumerate() {
        out.push((name(*f, false), f32s[k]));
        out.push((name(*f, true), f64s[k]));
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
