//! A vectorisable math library emitted as Cranelift IR.
//!
//! [`emit`] writes `exp`, `log`, `tanh`, `sigmoid`, `sin`, `cos` or `pow` inline into the
//! function being built, for `f32`, `f64`, `f32x4` and `f64x2`. The code is straight-line:
//! special cases are handled with `select`/`bitselect` and all integer work is done on the
//! bit patterns, so the same instruction sequence serves scalars and every vector lane.
//! Polynomials are evaluated with `fma`; without the `has_fma` ISA flag Cranelift lowers
//! it to the `fma`/`fmaf` libcalls, which give bit-identical (but slow) results.
//!
//! Measured accuracy: max error in ulps over the test inputs (dense grids, 500k random
//! finite bit patterns per case, special values and thresholds). f32 lanes are compared
//! with the f64 std function, so their errors are fractional ulps of the exact value.
//! f64 lanes are compared with std (glibc), counting representable values between the
//! results; the reference itself is off by up to ~0.5 ulp (exp/log/sin/cos/pow) and up to
//! ~1.6 ulp for tanh (spot-checked at 60 digits), so the f64 tanh figure is pessimistic.
//! Scalar and vector code are the same instructions and measure the same.
//!
//! | fn      | f32, f32x4 | f64, f64x2 | domain                                             |
//! |---------|------------|------------|----------------------------------------------------|
//! | exp     | 0.87       | 1          | all floats; +inf above ln(MAX), 0 below the subnormals |
//! | log     | 0.80       | 1          | all floats, subnormals included                    |
//! | tanh    | 1.41       | 3          | all floats                                         |
//! | sigmoid | 1.28       | 2          | all floats (subnormal tails included)              |
//! | sin     | 1.41       | 1          | abs(x) <= 2^20 (f32) / 2^40 (f64); NaN beyond (1) |
//! | cos     | 1.44       | 1          | abs(x) <= 2^20 (f32) / 2^40 (f64); NaN beyond (1) |
//! | pow     | 0.50       | 1          | all floats (C99 `pow` special cases)               |
//!
//! (1) The inline code only; the JIT (`clif/gen.rs`) branches to the std function for
//! vectors with a lane beyond the limit, so compiled programs are right on all floats.
//!
//! f32 pow is evaluated in f64 (f32x4 as two f64x2 halves); f64 pow uses a double-double
//! log so that `y·log x` keeps its accuracy up to |y·log x| ≈ 745.
//!
//! [`ulp_bound`] returns the bound that the tests assert.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_frontend::FunctionBuilder;

/// A math function that [`emit`] can inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MathFn {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Sin,
    Cos,
    Pow,
}

impl MathFn {
    /// Every function, in declaration order.
    pub const ALL: [MathFn; 7] = [
        MathFn::Exp,
        MathFn::Log,
        MathFn::Tanh,
        MathFn::Sigmoid,
        MathFn::Sin,
        MathFn::Cos,
        MathFn::Pow,
    ];
}

/// The documented bound: max error in ulps measured by the tests, per function and
/// precision (scalar and vector code are the same instructions, so they share a bound).
pub fn ulp_bound(f: MathFn, ty_is_f64: bool) -> f64 {
    match (f, ty_is_f64) {
        (MathFn::Exp | MathFn::Log, _) => 1.0,
        (MathFn::Tanh, false) => 1.5,
        (MathFn::Tanh, true) => 3.0,
        (MathFn::Sigmoid | MathFn::Sin | MathFn::Cos, false) => 1.5,
        (MathFn::Sigmoid, true) => 2.0,
        (MathFn::Sin | MathFn::Cos, true) => 1.0,
        (MathFn::Pow, _) => 1.0,
    }
}

/// Emits `f(x)` (or `pow(x, y)`) inline into the function being built, for `ty` in
/// {F32, F64, F32X4, F64X2}. `y` is Some only for Pow. The result has type `ty`.
pub fn emit(b: &mut FunctionBuilder, f: MathFn, x: Value, y: Option<Value>, ty: Type) -> Value {
    assert!(
        matches!(ty, types::F32 | types::F64 | types::F32X4 | types::F64X2),
        "clif_math: unsupported type {ty}"
    );
    assert_eq!(
        y.is_some(),
        f == MathFn::Pow,
        "clif_math: y is given exactly for Pow"
    );
    if let Some(y) = y {
        return emit_pow(b, x, y, ty);
    }
    let mut e = Emitter::new(b, ty);
    match f {
        MathFn::Exp => e.exp(x, None),
        MathFn::Log => e.log(x),
        MathFn::Tanh => e.tanh(x),
        MathFn::Sigmoid => e.sigmoid(x),
        MathFn::Sin => e.sin_cos(x, false),
        MathFn::Cos => e.sin_cos(x, true),
        MathFn::Pow => unreachable!("handled above"),
    }
}

/// Emits L-Mul (`tir::lmul`, bit-exact) of `x` and `y` for `ty` in {F32, F64, F32X4,
/// F64X2}, keeping `m` mantissa bits (0: all). Straight-line integer code on the lanes:
/// the special cases are computed for every lane and chosen with selects.
pub fn emit_lmul(b: &mut FunctionBuilder, x: Value, y: Value, ty: Type, m: u8) -> Value {
    let mut e = Emitter::new(b, ty);
    let crate::tir::lmul::Consts { p, sign, inf, one, h, m, off, .. } = crate::tir::lmul::consts(e.wide, m);
    let (xb, yb) = (e.bits(x), e.bits(y));
    let abs = e.ki(sign - 1);
    let xa = e.b.ins().band(xb, abs);
    let ya = e.b.ins().band(yb, abs);
    let sx = e.b.ins().bxor(xb, yb);
    let signk = e.ki(sign);
    let s = e.b.ins().band(sx, signk);
    // Classes on the untruncated magnitudes, which are non-negative as signed lanes.
    let (mn, infk) = (e.ki(1u64 << p), e.ki(inf));
    let xz = e.b.ins().icmp(IntCC::SignedLessThan, xa, mn);
    let yz = e.b.ins().icmp(IntCC::SignedLessThan, ya, mn);
    let zero = e.b.ins().bor(xz, yz);
    let xi = e.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, xa, infk);
    let yi = e.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, ya, infk);
    let infs = e.b.ins().bor(xi, yi);
    let xn = e.b.ins().icmp(IntCC::SignedGreaterThan, xa, infk);
    let yn = e.b.ins().icmp(IntCC::SignedGreaterThan, ya, infk);
    let inf_zero = e.b.ins().band(infs, zero);
    let nan = e.b.ins().bor(xn, yn);
    let nan = e.b.ins().bor(nan, inf_zero);
    let (xt, yt) = if m < p {
        let keep = e.ki((sign - 1) & !((1u64 << (p - m)) - 1));
        (e.b.ins().band(xa, keep), e.b.ins().band(ya, keep))
    } else {
        (xa, ya)
    };
    // v = |x| + |y| + off - one - 2^(w-2) wraps to the exact signed value of the true
    // sum minus 2^(w-2), so signed compares find overflow and underflow.
    let k = e.ki(off.wrapping_sub(one).wrapping_sub(h));
    let v = e.b.ins().iadd(xt, yt);
    let v = e.b.ins().iadd(v, k);
    let over_at = e.ki(inf.wrapping_sub(h));
    let over = e.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, v, over_at);
    let under_at = e.ki((1u64 << p).wrapping_sub(h));
    let under = e.b.ins().icmp(IntCC::SignedLessThan, v, under_at);
    let hk = e.ki(h);
    let r = e.b.ins().iadd(v, hk);
    let r = e.b.ins().bor(r, s);
    let s_inf = e.b.ins().bor(s, infk);
    let r = e.sel(over, s_inf, r);
    let to_zero = e.b.ins().bor(under, zero);
    let r = e.sel(to_zero, s, r);
    let r = e.sel(infs, s_inf, r);
    let qnan = e.ki(inf | (1u64 << (p - 1)));
    let r = e.sel(nan, qnan, r);
    e.float(r)
}

/// Pow for f32 runs in f64 so that `y * log(x)` keeps enough bits; f64 uses double-double.
fn emit_pow(b: &mut FunctionBuilder, x: Value, y: Value, ty: Type) -> Value {
    match ty {
        types::F64 | types::F64X2 => Emitter::new(b, ty).pow(x, y, true),
        types::F32 => {
            let xd = b.ins().fpromote(types::F64, x);
            let yd = b.ins().fpromote(types::F64, y);
            let r = Emitter::new(b, types::F64).pow(xd, yd, false);
            b.ins().fdemote(types::F32, r)
        }
        _ => {
            // f32x4 is processed as two f64x2 halves: lanes 0-1 and lanes 2-3.
            let high_to_low: Vec<u8> = (8..16).chain(8..16).collect();
            let xh = shuffle_f32x4(b, x, x, &high_to_low);
            let yh = shuffle_f32x4(b, y, y, &high_to_low);
            let mut halves = [x, xh].map(|v| b.ins().fvpromote_low(v));
            let yd = [y, yh].map(|v| b.ins().fvpromote_low(v));
            for (h, yv) in halves.iter_mut().zip(yd) {
                let r = Emitter::new(b, types::F64X2).pow(*h, yv, false);
                *h = b.ins().fvdemote(r);
            }
            let join: Vec<u8> = (0..8).chain(16..24).collect();
            shuffle_f32x4(b, halves[0], halves[1], &join)
        }
    }
}

/// A byte shuffle of two f32x4 values (`shuffle` is defined on i8x16 only).
fn shuffle_f32x4(b: &mut FunctionBuilder, x: Value, y: Value, mask: &[u8]) -> Value {
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    let xb = b.ins().bitcast(types::I8X16, le, x);
    let yb = b.ins().bitcast(types::I8X16, le, y);
    let imm = b.func.dfg.immediates.push(ConstantData::from(mask));
    let s = b.ins().shuffle(xb, yb, imm);
    b.ins().bitcast(types::F32X4, le, s)
}

/// sin/cos are accurate for |x| <= this in f64 lanes (and return NaN beyond it).
pub const TRIG_LIMIT_F64: f64 = 1099511627776.0; // 2^40
/// sin/cos are accurate for |x| <= this in f32 lanes (and return NaN beyond it).
pub const TRIG_LIMIT_F32: f64 = 1048576.0; // 2^20

/// The limit of the inline sin/cos reduction for f64 (`wide`) or f32 lanes. The
/// JIT branches to the std function for lanes beyond it.
pub fn trig_limit(wide: bool) -> f64 {
    if wide {
        TRIG_LIMIT_F64
    } else {
        TRIG_LIMIT_F32
    }
}

/// 1/n! for n = 0..=17.
fn inv_fact(n: usize) -> f64 {
    (1..=n).fold(1.0, |acc, k| acc / k as f64)
}

/// Emits code for one float type; `wide` selects the f64 constants and bit layouts.
struct Emitter<'s, 'f> {
    b: &'s mut FunctionBuilder<'f>,
    ty: Type,
    ity: Type,
    wide: bool,
}

impl<'s, 'f> Emitter<'s, 'f> {
    fn new(b: &'s mut FunctionBuilder<'f>, ty: Type) -> Self {
        Emitter {
            b,
            ty,
            ity: ty.as_int(),
            wide: ty.lane_type() == types::F64,
        }
    }

    // ---- Constants and thin instruction wrappers. ----

    /// A float constant, rounded to the lane precision and splatted for vectors.
    fn k(&mut self, v: f64) -> Value {
        let s = if self.wide {
            self.b.ins().f64const(v)
        } else {
            self.b.ins().f32const(v as f32)
        };
        self.splat(self.ty, s)
    }

    /// A float constant given by its exact bit patterns for f64 and for f32.
    fn kbits(&mut self, b64: u64, b32: u32) -> Value {
        if self.wide {
            self.k(f64::from_bits(b64))
        } else {
            self.k(f32::from_bits(b32) as f64)
        }
    }

    /// An integer constant in the lane width (truncated to 32 bits for f32 lanes).
    fn ki(&mut self, v: u64) -> Value {
        let lane = self.ity.lane_type();
        let imm = if self.wide {
            v as i64
        } else {
            (v as u32) as i64
        };
        let s = self.b.ins().iconst(lane, imm);
        self.splat(self.ity, s)
    }

    fn splat(&mut self, ty: Type, s: Value) -> Value {
        if ty.is_vector() {
            self.b.ins().splat(ty, s)
        } else {
            s
        }
    }

    fn bits(&mut self, x: Value) -> Value {
        self.b.ins().bitcast(self.ity, MemFlagsData::new(), x)
    }

    fn float(&mut self, i: Value) -> Value {
        self.b.ins().bitcast(self.ty, MemFlagsData::new(), i)
    }

    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }

    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }

    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }

    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }

    fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        self.b.ins().fma(a, b, c)
    }

    fn mulk(&mut self, a: Value, c: f64) -> Value {
        let c = self.k(c);
        self.mul(a, c)
    }

    fn addk(&mut self, a: Value, c: f64) -> Value {
        let c = self.k(c);
        self.add(a, c)
    }

    /// A lane mask (i8 for scalars, all-ones lanes for vectors).
    fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    fn cmpk(&mut self, cc: FloatCC, a: Value, c: f64) -> Value {
        let c = self.k(c);
        self.cmp(cc, a, c)
    }

    /// Lane-wise `m ? a : b`; `m` is a comparison result or an all-ones/zero integer mask.
    fn sel(&mut self, m: Value, a: Value, b: Value) -> Value {
        if self.ty.is_vector() {
            let vty = self.b.func.dfg.value_type(a);
            let m = if self.b.func.dfg.value_type(m) == vty {
                m
            } else {
                self.b.ins().bitcast(vty, MemFlagsData::new(), m)
            };
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(m, a, b)
        }
    }

    /// `|a|` with the sign of `s`, on the bits (x86 has no vector `fcopysign` lowering).
    fn copysign(&mut self, a: Value, s: Value) -> Value {
        let (abs_mask, sign_mask) = if self.wide {
            (u64::MAX >> 1, 1u64 << 63)
        } else {
            (u32::MAX as u64 >> 1, 1u64 << 31)
        };
        let ab = self.bits(a);
        let am = self.ki(abs_mask);
        let ab = self.b.ins().band(ab, am);
        let sb = self.bits(s);
        let sm = self.ki(sign_mask);
        let sb = self.b.ins().band(sb, sm);
        let r = self.b.ins().bor(ab, sb);
        self.float(r)
    }

    fn selk(&mut self, m: Value, a: f64, b: Value) -> Value {
        let a = self.k(a);
        self.sel(m, a, b)
    }

    /// Horner's rule with `fma`; `cs` lists the coefficients from the highest degree down.
    fn horner(&mut self, x: Value, cs: &[f64]) -> Value {
        let mut p = self.k(cs[0]);
        for &c in &cs[1..] {
            let c = self.k(c);
            p = self.fma(p, x, c);
        }
        p
    }

    /// 2^k for an integral float `k` whose biased exponent is a normal one. Adding
    /// 1.5·2^52 (+ bias) puts `k + bias` in the low mantissa bits, which are then shifted
    /// into the exponent field; this avoids float-to-int conversions, which x86 lacks for
    /// i64x2 without AVX-512.
    fn pow2(&mut self, k: Value) -> Value {
        let (magic, shift) = if self.wide {
            (6755399441055744.0 + 1023.0, 52)
        } else {
            (12582912.0 + 127.0, 23)
        };
        let t = self.addk(k, magic);
        let t = self.bits(t);
        let t = self.b.ins().ishl_imm_u(t, shift);
        self.float(t)
    }

    /// Clamps `x` into [lo, hi]; NaN passes through (compares are false).
    fn clamp(&mut self, x: Value, lo: f64, hi: f64) -> Value {
        let m = self.cmpk(FloatCC::LessThan, x, lo);
        let x = self.selk(m, lo, x);
        let m = self.cmpk(FloatCC::GreaterThan, x, hi);
        self.selk(m, hi, x)
    }

    // ---- exp ----

    /// `ln 2` split into a head and a tail; with `fma`, `x - k*LN2_HI` is exact.
    fn ln2_hi(&mut self) -> Value {
        self.kbits(0x3fe62e42fefa39ef, 0x3f317218)
    }

    fn ln2_lo(&mut self) -> Value {
        self.kbits(0x3c7abc9e3b39803f, 0xb102e308)
    }

    /// Reduces `x = k·ln2 + r` with |r| <= ln2/2 and returns (k, r); `tail` is an extra
    /// low-order part of `x` (double-double input from pow).
    fn reduce_ln2(&mut self, x: Value, tail: Option<Value>) -> (Value, Value) {
        let t = self.mulk(x, std::f64::consts::LOG2_E);
        let k = self.b.ins().nearest(t);
        let nk = self.b.ins().fneg(k);
        let hi = self.ln2_hi();
        let lo = self.ln2_lo();
        let r = self.fma(nk, hi, x);
        let r = match tail {
            Some(t) => {
                let c = self.fma(nk, lo, t);
                self.add(r, c)
            }
            None => self.fma(nk, lo, r),
        };
        (k, r)
    }

    /// exp(x + tail). Overflow gives +inf, underflow 0 (with correctly scaled subnormals).
    fn exp(&mut self, x: Value, tail: Option<Value>) -> Value {
        // The clamp keeps 2^k representable as a product of two normal powers of two.
        let x = if self.wide {
            self.clamp(x, -746.0, 710.0)
        } else {
            self.clamp(x, -104.0, 89.0)
        };
        let (k, r) = self.reduce_ln2(x, tail);
        // Taylor series of e^r on |r| <= 0.347: degree 13 (f64) / 7 (f32) leaves < 0.1 ulp.
        let deg = if self.wide { 13 } else { 7 };
        let cs: Vec<f64> = (0..=deg).rev().map(inv_fact).collect();
        let p = self.horner(r, &cs);
        // Two scale factors so that results near the subnormal range round only once.
        let half = self.mulk(k, 0.5);
        let k1 = self.b.ins().nearest(half);
        let k2 = self.sub(k, k1);
        let s1 = self.pow2(k1);
        let s2 = self.pow2(k2);
        let p = self.mul(p, s1);
        self.mul(p, s2)
    }

    /// expm1(u) for 0 <= u <= 40 (f64) / 20 (f32), without cancellation near 0.
    fn expm1_small_pos(&mut self, u: Value) -> Value {
        let (k, r) = self.reduce_ln2(u, None);
        // expm1(r) = r + r²·q(r), q = 1/2 + r/6 + ...
        let deg = if self.wide { 13 } else { 7 };
        let cs: Vec<f64> = (2..=deg).rev().map(inv_fact).collect();
        let q = self.horner(r, &cs);
        let r2 = self.mul(r, r);
        let em = self.fma(r2, q, r);
        // expm1(u) = 2^k·expm1(r) + (2^k - 1); 2^k - 1 is exact for the k that occur here.
        let s = self.pow2(k);
        let sm1 = self.addk(s, -1.0);
        self.fma(s, em, sm1)
    }

    // ---- tanh, sigmoid ----

    fn tanh(&mut self, x: Value) -> Value {
        // tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2): no cancellation for small |x|, and
        // beyond the clamp the quotient rounds to 1.
        let a = self.b.ins().fabs(x);
        let a = if self.wide {
            self.clamp(a, 0.0, 20.0)
        } else {
            self.clamp(a, 0.0, 10.0)
        };
        let u = self.add(a, a);
        let e = self.expm1_small_pos(u);
        // d + dl = e + 2 exactly (TwoSum, since e may be larger or smaller than 2).
        let two = self.k(2.0);
        let d = self.add(e, two);
        let bb = self.sub(d, e);
        let a1 = self.sub(d, bb);
        let a1 = self.sub(e, a1);
        let b1 = self.sub(two, bb);
        let dl = self.add(a1, b1);
        let t = self.div_corrected(e, d, dl);
        self.copysign(t, x)
    }

    fn sigmoid(&mut self, x: Value) -> Value {
        // With e = exp(-|x|) <= 1: 1/(1+e) for x >= 0 and e/(1+e) for x < 0, so neither
        // side overflows and tiny results keep their relative accuracy.
        let a = self.b.ins().fabs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp(na, None);
        let d = self.addk(e, 1.0);
        let neg = self.cmpk(FloatCC::LessThan, x, 0.0);
        let one = self.k(1.0);
        let num = self.sel(neg, e, one);
        let dm1 = self.addk(d, -1.0);
        let dl = self.sub(e, dm1);
        self.div_corrected(num, d, dl)
    }

    /// num / (d + dl) where dl is the exact rounding error of d: one correction step with
    /// the exact residual removes the roundings of d and of the first division.
    fn div_corrected(&mut self, num: Value, d: Value, dl: Value) -> Value {
        let q = self.div(num, d);
        let nq = self.b.ins().fneg(q);
        let rr = self.fma(nq, d, num);
        let rr = self.fma(nq, dl, rr);
        let c = self.div(rr, d);
        self.add(q, c)
    }

    // ---- log ----

    /// Splits a positive `x` into `x = 2^e · m` with m in [sqrt(1/2), sqrt(2)), returning
    /// (e as a float, m). Subnormals are scaled up first.
    fn log_reduce(&mut self, x: Value) -> (Value, Value) {
        let (min_normal, scale, scale_log2) = if self.wide {
            (f64::MIN_POSITIVE, 2f64.powi(54), 54.0)
        } else {
            (f32::MIN_POSITIVE as f64, 2f64.powi(24), 24.0)
        };
        let tiny = self.cmpk(FloatCC::LessThan, x, min_normal);
        let xs = self.mulk(x, scale);
        let xs = self.sel(tiny, xs, x);
        let zero = self.k(0.0);
        let adj = self.selk(tiny, scale_log2, zero);
        // Adding (1.0 - sqrt(1/2)) in bits carries into the exponent exactly when the
        // mantissa is >= sqrt(1/2), so m lands in [sqrt(1/2), sqrt(2)).
        let (off, shift, mant, sqrth, ebits, ebias) = if self.wide {
            (
                0x3ff0000000000000u64 - 0x3fe6a09e667f3bcd,
                52,
                0x000fffffffffffffu64,
                0x3fe6a09e667f3bcdu64,
                0x4330000000000000u64,
                4503599627370496.0 + 1023.0,
            )
        } else {
            (
                0x3f800000 - 0x3f3504f3,
                23,
                0x007fffff,
                0x3f3504f3,
                0x4b000000,
                8388608.0 + 127.0,
            )
        };
        let ix = self.bits(xs);
        let offv = self.ki(off);
        let ix = self.b.ins().iadd(ix, offv);
        let eb = self.b.ins().ushr_imm_u(ix, shift);
        // The biased exponent is OR-ed into the mantissa of 2^52 (2^23) to convert it.
        let ebv = self.ki(ebits);
        let ef = self.b.ins().bor(eb, ebv);
        let ef = self.float(ef);
        let ef = self.addk(ef, -ebias);
        let ef = self.sub(ef, adj);
        let mv = self.ki(mant);
        let mb = self.b.ins().band(ix, mv);
        let sv = self.ki(sqrth);
        let mb = self.b.ins().iadd(mb, sv);
        let m = self.float(mb);
        (ef, m)
    }

    /// Coefficients 2/(2n+1) of 2·atanh(s) = 2s + Σ 2 s^(2n+1)/(2n+1), highest first.
    fn atanh_coeffs(from: usize, to: usize) -> Vec<f64> {
        (from..=to)
            .rev()
            .map(|n| 2.0 / (2 * n + 1) as f64)
            .collect()
    }

    fn log(&mut self, x: Value) -> Value {
        let (ef, m) = self.log_reduce(x);
        // log(1+f) = 2 atanh(s), s = f/(2+f), |s| <= 0.1716; written as
        // f - hfsq + s·(hfsq + R) so that the leading term f is exact.
        let f = self.addk(m, -1.0);
        let d = self.addk(f, 2.0);
        let s = self.div(f, d);
        let z = self.mul(s, s);
        let nterms = if self.wide { 10 } else { 5 };
        let p = self.horner(z, &Self::atanh_coeffs(1, nterms));
        let rr = self.mul(z, p);
        let ff = self.mul(f, f);
        let hfsq = self.mulk(ff, 0.5);
        let lo = self.ln2_lo();
        let elo = self.mul(ef, lo);
        let t = self.add(hfsq, rr);
        let t1 = self.fma(s, t, elo);
        let t2 = self.sub(hfsq, t1);
        let rest = self.sub(f, t2);
        let hi = self.ln2_hi();
        let res = self.fma(ef, hi, rest);
        self.log_specials(x, res)
    }

    /// log(x<0 or NaN) = NaN, log(±0) = -inf, log(+inf) = +inf.
    fn log_specials(&mut self, x: Value, res: Value) -> Value {
        let bad = self.cmpk(FloatCC::UnorderedOrLessThan, x, 0.0);
        let res = self.selk(bad, f64::NAN, res);
        let zero = self.cmpk(FloatCC::Equal, x, 0.0);
        let res = self.selk(zero, f64::NEG_INFINITY, res);
        let inf = self.cmpk(FloatCC::Equal, x, f64::INFINITY);
        self.selk(inf, f64::INFINITY, res)
    }

    /// log(x) for x >= 0 as a double-double (hi, lo), relative error about 2^-66; used by
    /// f64 pow where |y·log x| up to 745 must keep ~0.1 ulp absolute accuracy.
    fn log_dd(&mut self, x: Value) -> (Value, Value) {
        let (ef, m) = self.log_reduce(x);
        let f = self.addk(m, -1.0);
        // u = 2 + f exactly as (u, ul).
        let u = self.addk(f, 2.0);
        let um2 = self.addk(u, -2.0);
        let ul = self.sub(f, um2);
        // s = f/(2+f) as (sh, sl) from the exact division residual.
        let sh = self.div(f, u);
        let nsh = self.b.ins().fneg(sh);
        let rho = self.fma(nsh, u, f);
        let rho = self.fma(nsh, ul, rho);
        let sl = self.div(rho, u);
        // s² and s³ as double-doubles (low parts only to first order).
        let s2h = self.mul(sh, sh);
        let ns2h = self.b.ins().fneg(s2h);
        let s2l = self.fma(sh, sh, ns2h);
        let sh2 = self.add(sh, sh);
        let s2l = self.fma(sh2, sl, s2l);
        let s3h = self.mul(s2h, sh);
        let ns3h = self.b.ins().fneg(s3h);
        let s3l = self.fma(s2h, sh, ns3h);
        let c = self.mul(s2h, sl);
        let c = self.fma(s2l, sh, c);
        let s3l = self.add(s3l, c);
        // T = (2/3)·s³ as a double-double.
        let c23h = self.kbits(0x3fe5555555555555, 0x3f2aaaab);
        let c23l = self.kbits(0x3c85555555555555, 0);
        let th = self.mul(c23h, s3h);
        let nth = self.b.ins().fneg(th);
        let tl = self.fma(c23h, s3h, nth);
        let c = self.mul(c23l, s3h);
        let c = self.fma(c23h, s3l, c);
        let tl = self.add(tl, c);
        // U = s⁵·Q(s²) is below 2^-12 of the result, so doubles suffice; the series runs to
        // s^27 because the double-double target is ~2^-64, not 2^-53.
        let q = self.horner(s2h, &Self::atanh_coeffs(2, 13));
        // s⁵ is rounded once from the double-double parts of s³ and s².
        let c = self.mul(s3l, s2h);
        let c = self.fma(s3h, s2l, c);
        let s5 = self.fma(s3h, s2h, c);
        let uu = self.mul(s5, q);
        // log1p(f) = 2s + T + U.
        let ah = self.add(sh2, th);
        let d = self.sub(sh2, ah);
        let al = self.add(d, th);
        let sl2 = self.add(sl, sl);
        let lo = self.add(tl, uu);
        let lo = self.add(sl2, lo);
        let lo = self.add(al, lo);
        // e·ln2 as a double-double, then add: |e·ln2| >= |log1p f| whenever e != 0.
        let ln2h = self.ln2_hi();
        let ln2l = self.ln2_lo();
        let eh = self.mul(ef, ln2h);
        let neh = self.b.ins().fneg(eh);
        let el = self.fma(ef, ln2h, neh);
        let el = self.fma(ef, ln2l, el);
        let hi = self.add(eh, ah);
        let d = self.sub(eh, hi);
        let err = self.add(d, ah);
        let lo2 = self.add(el, lo);
        let lo = self.add(err, lo2);
        // Renormalise so that y·lo stays tiny: exp's reduction assumes |tail| << |r|.
        let sum = self.add(hi, lo);
        let d = self.sub(sum, hi);
        let lo = self.sub(lo, d);
        let hi = self.log_specials(x, sum);
        (hi, lo)
    }

    // ---- pow ----

    /// pow(x, y) = exp(y·log|x|) with C99 special cases. `dd` selects the double-double
    /// log (needed for f64 results; f32 pow calls this in f64 without it).
    fn pow(&mut self, x: Value, y: Value, dd: bool) -> Value {
        let ax = self.b.ins().fabs(x);
        let r = if dd {
            let (lh, ll) = self.log_dd(ax);
            let th = self.mul(y, lh);
            let nth = self.b.ins().fneg(th);
            let tl = self.fma(y, lh, nth);
            let tl = self.fma(y, ll, tl);
            // When y·log|x| is huge or not finite the tail is meaningless (inf - inf).
            let ath = self.b.ins().fabs(th);
            let ok = self.cmpk(FloatCC::LessThan, ath, 1000.0);
            let zero = self.k(0.0);
            let tl = self.sel(ok, tl, zero);
            self.exp(th, Some(tl))
        } else {
            let l = self.log(ax);
            let t = self.mul(y, l);
            self.exp(t, None)
        };
        // Negative x: odd integer y flips the sign, non-integer y gives NaN.
        let ty = self.b.ins().trunc(y);
        let y_int = self.cmp(FloatCC::Equal, ty, y);
        let y_frac = self.cmp(FloatCC::NotEqual, ty, y);
        let yh = self.mulk(y, 0.5);
        let tyh = self.b.ins().trunc(yh);
        let half_frac = self.cmp(FloatCC::NotEqual, tyh, yh);
        let y_odd = self.b.ins().band(y_int, half_frac);
        let one = self.k(1.0);
        let sx = self.copysign(one, x);
        let x_signed = self.cmpk(FloatCC::LessThan, sx, 0.0);
        let flip = self.b.ins().band(x_signed, y_odd);
        let nr = self.b.ins().fneg(r);
        let r = self.sel(flip, nr, r);
        // Only finite negative x: pow(-inf, y) is ±0 or ±inf like C's pow.
        let x_neg = self.cmpk(FloatCC::LessThan, x, 0.0);
        let x_fin = self.cmpk(FloatCC::GreaterThan, x, f64::NEG_INFINITY);
        let bad = self.b.ins().band(x_neg, y_frac);
        let bad = self.b.ins().band(bad, x_fin);
        let r = self.selk(bad, f64::NAN, r);
        // |x| = 1 with y = ±inf gives 1 (log|x| = 0 would make 0·inf = NaN).
        let ax1 = self.cmpk(FloatCC::Equal, ax, 1.0);
        let ay = self.b.ins().fabs(y);
        let yinf = self.cmpk(FloatCC::Equal, ay, f64::INFINITY);
        let m = self.b.ins().band(ax1, yinf);
        let r = self.selk(m, 1.0, r);
        let nan = self.cmp(FloatCC::Unordered, x, y);
        let r = self.selk(nan, f64::NAN, r);
        // pow(1, y) = 1 and pow(x, ±0) = 1 even for NaN arguments.
        let x1 = self.cmpk(FloatCC::Equal, x, 1.0);
        let r = self.selk(x1, 1.0, r);
        let y0 = self.cmpk(FloatCC::Equal, y, 0.0);
        self.selk(y0, 1.0, r)
    }

    // ---- sin, cos ----

    fn sin_cos(&mut self, x: Value, cos: bool) -> Value {
        // x = k·π/2 + r with π/2 in three parts; the first fma is exact for the supported
        // range and the later ones only round relative to r.
        let t = self.mulk(x, std::f64::consts::FRAC_2_PI);
        let k = self.b.ins().nearest(t);
        let nk = self.b.ins().fneg(k);
        let p1 = self.kbits(0x3ff921fb54442d18, 0x3fc90fdb);
        let p2 = self.kbits(0x3c91a62633145c07, 0xb33bbd2e);
        let p3 = self.kbits(0xb91f1976b7ed8fbc, 0xa6f72ced);
        let r = self.fma(nk, p1, x);
        let r = self.fma(nk, p2, r);
        let r = self.fma(nk, p3, r);
        // Taylor series on |r| <= π/4: sin to r^17 / cos to r^16 (f64), r^9 / r^10 (f32).
        let (ns, nc) = if self.wide { (8, 8) } else { (4, 5) };
        let z = self.mul(r, r);
        let sc: Vec<f64> = (1..=ns)
            .rev()
            .map(|n| if n % 2 == 0 { 1.0 } else { -1.0 } * inv_fact(2 * n + 1))
            .collect();
        let ps = self.horner(z, &sc);
        let rz = self.mul(r, z);
        let s = self.fma(rz, ps, r);
        let cc: Vec<f64> = (1..=nc)
            .rev()
            .map(|n| if n % 2 == 0 { 1.0 } else { -1.0 } * inv_fact(2 * n))
            .collect();
        let pc = self.horner(z, &cc);
        let one = self.k(1.0);
        let c = self.fma(z, pc, one);
        // Quadrant q = k mod 4 (cos uses k + 1): bit 0 swaps sin/cos, bit 1 flips the sign.
        // The low bits of k come from the mantissa of k + 1.5·2^52 (1.5·2^23).
        let magic = if self.wide {
            6755399441055744.0
        } else {
            12582912.0
        };
        let kq = self.addk(k, if cos { magic + 1.0 } else { magic });
        let kb = self.bits(kq);
        let one_i = self.ki(1);
        let bit0 = self.b.ins().band(kb, one_i);
        let zero_i = self.ki(0);
        let swap = self.b.ins().isub(zero_i, bit0);
        let v = self.sel(swap, c, s);
        let two_i = self.ki(2);
        let bit1 = self.b.ins().band(kb, two_i);
        let sign = self
            .b
            .ins()
            .ishl_imm_u(bit1, if self.wide { 62 } else { 30 });
        let vb = self.bits(v);
        let vb = self.b.ins().bxor(vb, sign);
        let res = self.float(vb);
        let res = if cos {
            res
        } else {
            // sin(±0) = ±0 (the reduction would turn -0 into +0).
            let z = self.cmpk(FloatCC::Equal, x, 0.0);
            self.sel(z, x, res)
        };
        // Beyond the limit the reduction has lost all bits of r; NaN beats garbage.
        let lim = if self.wide {
            TRIG_LIMIT_F64
        } else {
            TRIG_LIMIT_F32
        };
        let ax = self.b.ins().fabs(x);
        let far = self.cmpk(FloatCC::GreaterThan, ax, lim);
        self.selk(far, f64::NAN, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::math_accuracy::{self, *};
    use cranelift_codegen::ir::condcodes::IntCC;
    use cranelift_codegen::ir::{AbiParam, BlockArg};
    use cranelift_codegen::settings::{self, Configurable};
    use cranelift_frontend::FunctionBuilderContext;
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::{default_libcall_names, Linkage, Module};

    const TYPES: [Type; 4] = [types::F32, types::F32X4, types::F64, types::F64X2];

    /// `kernel(x, y, out, nbytes)` applies the function element-wise.
    type Kernel = unsafe extern "C" fn(*const u8, *const u8, *mut u8, u64);

    /// Compiled kernels for one function over all four types. The module owns the code.
    struct Kernels {
        _module: JITModule,
        by_type: Vec<(Type, Kernel)>,
    }

    impl Kernels {
        fn get(&self, ty: Type) -> Kernel {
            self.by_type.iter().find(|(t, _)| *t == ty).unwrap().1
        }
    }

    fn compile(fs: &[MathFn], fma: bool) -> Vec<(MathFn, Kernels)> {
        fs.iter().map(|&f| (f, compile_one(f, fma))).collect()
    }

    fn compile_one(f: MathFn, fma: bool) -> Kernels {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").unwrap();
        flags.set("use_colocated_libcalls", "false").unwrap();
        flags.set("is_pic", "false").unwrap();
        let mut isa_builder = cranelift_native::builder().unwrap();
        if !fma {
            isa_builder.set("has_fma", "false").unwrap();
        }
        let isa = isa_builder.finish(settings::Flags::new(flags)).unwrap();
        let has_fma = isa
            .isa_flags()
            .iter()
            .any(|v| v.name == "has_fma" && v.as_bool() == Some(true));
        assert!(fma || !has_fma, "has_fma could not be turned off");
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ptr = module.target_config().pointer_type();
        let mut ids = Vec::new();
        let mut fctx = FunctionBuilderContext::new();
        for ty in TYPES {
            let mut sig = module.make_signature();
            for _ in 0..4 {
                sig.params.push(AbiParam::new(ptr));
            }
            let name = format!("{f:?}_{ty}");
            let id = module
                .declare_function(&name, Linkage::Export, &sig)
                .unwrap();
            let mut ctx = module.make_context();
            ctx.func.signature = sig;
            {
                let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                let entry = b.create_block();
                let head = b.create_block();
                let body = b.create_block();
                let exit = b.create_block();
                b.append_block_params_for_function_params(entry);
                b.switch_to_block(entry);
                let [px, py, po, n] = b.block_params(entry).try_into().unwrap();
                let zero = b.ins().iconst(ptr, 0);
                b.ins().jump(head, &[BlockArg::Value(zero)]);
                let off = b.append_block_param(head, ptr);
                b.switch_to_block(head);
                let more = b.ins().icmp(IntCC::UnsignedLessThan, off, n);
                b.ins().brif(more, body, &[], exit, &[]);
                b.switch_to_block(body);
                let flags = MemFlagsData::new().with_notrap();
                let ax = b.ins().iadd(px, off);
                let x = b.ins().load(ty, flags, ax, 0);
                let y = (f == MathFn::Pow).then(|| {
                    let ay = b.ins().iadd(py, off);
                    b.ins().load(ty, flags, ay, 0)
                });
                let r = emit(&mut b, f, x, y, ty);
                let ao = b.ins().iadd(po, off);
                b.ins().store(flags, r, ao, 0);
                let next = b.ins().iadd_imm_u(off, ty.bytes() as i64);
                b.ins().jump(head, &[BlockArg::Value(next)]);
                b.switch_to_block(exit);
                b.ins().return_(&[]);
                b.seal_all_blocks();
                b.finalize(module.target_config());
            }
            module.define_function(id, &mut ctx).unwrap();
            module.clear_context(&mut ctx);
            ids.push((ty, id));
        }
        module.finalize_definitions().unwrap();
        let by_type = ids
            .into_iter()
            .map(|(ty, id)| {
                let p = module.get_finalized_function(id);
                // SAFETY: the function was built with exactly this signature.
                (ty, unsafe { std::mem::transmute::<*const u8, Kernel>(p) })
            })
            .collect();
        Kernels {
            _module: module,
            by_type,
        }
    }

    /// Runs a kernel over f64 inputs; f32 types round them first. Returns f64 results.
    fn run(k: &Kernels, ty: Type, xs: &[f64], ys: &[f64]) -> Vec<f64> {
        let kern = k.get(ty);
        let n = xs.len().next_multiple_of(4);
        let pad = |v: &[f64]| {
            let mut v = v.to_vec();
            v.resize(n, 1.0);
            v
        };
        let (xs, ys) = (pad(xs), pad(ys));
        let len = xs.len();
        if ty.lane_type() == types::F64 {
            let mut out = vec![0.0f64; n];
            // SAFETY: all buffers hold n elements and the kernel reads/writes n·8 bytes.
            unsafe {
                kern(
                    xs.as_ptr().cast(),
                    ys.as_ptr().cast(),
                    out.as_mut_ptr().cast(),
                    (n * 8) as u64,
                )
            };
            out.truncate(len);
            out
        } else {
            let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
            let y32: Vec<f32> = ys.iter().map(|&v| v as f32).collect();
            let mut out = vec![0.0f32; n];
            // SAFETY: as above with 4-byte elements.
            unsafe {
                kern(
                    x32.as_ptr().cast(),
                    y32.as_ptr().cast(),
                    out.as_mut_ptr().cast(),
                    (n * 4) as u64,
                )
            };
            out.into_iter().map(f64::from).collect()
        }
    }

    /// The std reference, and NaN beyond the inline sin/cos reduction's range, which is
    /// what the inline code alone gives there (the JIT branches to std instead).
    fn reference(f: MathFn, x: f64, y: f64, wide: bool) -> f64 {
        match f {
            MathFn::Sin | MathFn::Cos if x.abs() > trig_limit(wide) => f64::NAN,
            _ => math_accuracy::reference(f, x, y),
        }
    }

    /// Max ulp error of `f` for `ty`, with the worst input.
    fn measure(k: &Kernels, f: MathFn, ty: Type) -> (f64, f64, f64) {
        let wide = ty.lane_type() == types::F64;
        let (xs, ys) = if f == MathFn::Pow {
            pow_inputs(wide)
        } else {
            let xs = unary_inputs(f, wide);
            let ys = vec![0.0; xs.len()];
            (xs, ys)
        };
        let got = run(k, ty, &xs, &ys);
        let mut worst = (0.0, f64::NAN, f64::NAN);
        for i in 0..xs.len() {
            let want = reference(f, xs[i], ys[i], wide);
            let e = if wide {
                ulps_f64(got[i], want)
            } else {
                ulps_f32(got[i], want)
            };
            if e > worst.0 {
                worst = (e, xs[i], ys[i]);
            }
        }
        worst
    }

    fn check(f: MathFn) {
        let ks = compile(&[f], true);
        let k = &ks[0].1;
        let mut failures = Vec::new();
        for ty in TYPES {
            let (e, x, y) = measure(k, f, ty);
            let bound = ulp_bound(f, ty.lane_type() == types::F64);
            eprintln!("{f:?} {ty}: max {e:.3} ulp (bound {bound}) at x={x:e} y={y:e}");
            if e.is_nan() || e > bound {
                failures.push(format!("{f:?} {ty}: {e} ulp > {bound} at x={x:e}, y={y:e}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn exp_accuracy() {
        check(MathFn::Exp);
    }

    #[test]
    fn log_accuracy() {
        check(MathFn::Log);
    }

    #[test]
    fn tanh_accuracy() {
        check(MathFn::Tanh);
    }

    #[test]
    fn sigmoid_accuracy() {
        check(MathFn::Sigmoid);
    }

    #[test]
    fn sin_accuracy() {
        check(MathFn::Sin);
    }

    #[test]
    fn cos_accuracy() {
        check(MathFn::Cos);
    }

    #[test]
    fn pow_accuracy() {
        check(MathFn::Pow);
    }

    /// Without `has_fma` Cranelift calls `fma`/`fmaf`, which are exact, so the results must be
    /// bit-identical to the native FMA build.
    #[test]
    fn without_fma_matches() {
        let with = compile(&MathFn::ALL, true);
        let without = compile(&MathFn::ALL, false);
        let mut rng = Rng(7);
        for ((f, a), (_, b)) in with.iter().zip(&without) {
            for ty in TYPES {
                let wide = ty.lane_type() == types::F64;
                let mut xs = specials(wide);
                xs.extend((0..2000).map(|_| rnd((rng.unit() - 0.5) * 60.0, wide)));
                let ys: Vec<f64> = xs
                    .iter()
                    .map(|_| rnd((rng.unit() - 0.5) * 8.0, wide))
                    .collect();
                let ra = run(a, ty, &xs, &ys);
                let rb = run(b, ty, &xs, &ys);
                for i in 0..xs.len() {
                    let same =
                        ra[i].to_bits() == rb[i].to_bits() || (ra[i].is_nan() && rb[i].is_nan());
                    assert!(
                        same,
                        "{f:?} {ty} x={} y={}: {} vs {}",
                        xs[i], ys[i], ra[i], rb[i]
                    );
                }
            }
        }
    }
}
