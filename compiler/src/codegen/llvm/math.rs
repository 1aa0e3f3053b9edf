//! The math library as inline scalar LLVM IR: `exp`, `log`, `tanh`, `sigmoid`, `sin`,
//! `cos` and `pow` for f32 and f64.
//!
//! These are the algorithms of `codegen::clif::math`, instruction for instruction: the
//! code is straight-line (special cases are `select`s, integer work is done on the bit
//! patterns, `nearest` is `llvm.rint`, polynomials use `llvm.fma`), so LLVM's loop
//! vectoriser widens it to the host's vectors like any other arithmetic, and the ulp
//! bounds are those of [`ulp_bound`] (the tests in this file measure them on the
//! compiled, vectorised code). No instruction here carries fast-math flags: the
//! double-double steps rely on exact IEEE rounding.
//!
//! As in `clif/math.rs`, the inline sin/cos reduction covers |x| up to [`trig_limit`] and
//! gives NaN beyond it; `gen.rs` sends such elements to the std function.

use super::R;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::types::{FloatType, IntType};
use inkwell::values::{FloatValue, IntValue};
use inkwell::FloatPredicate as P;

pub use crate::codegen::clif::math::{trig_limit, MathFn};

/// 1/n! for n = 0..=17.
fn inv_fact(n: usize) -> f64 {
    (1..=n).fold(1.0, |acc, k| acc / k as f64)
}

/// Emits math for one float type (`wide` is f64).
pub(super) struct Math<'a, 'ctx> {
    cx: &'ctx Context,
    b: &'a Builder<'ctx>,
    m: &'a Module<'ctx>,
    ft: FloatType<'ctx>,
    it: IntType<'ctx>,
    wide: bool,
}

type F<'ctx> = FloatValue<'ctx>;
type I<'ctx> = IntValue<'ctx>;

impl<'a, 'ctx> Math<'a, 'ctx> {
    pub fn new(cx: &'ctx Context, b: &'a Builder<'ctx>, m: &'a Module<'ctx>, wide: bool) -> Self {
        let (ft, it) = if wide {
            (cx.f64_type(), cx.i64_type())
        } else {
            (cx.f32_type(), cx.i32_type())
        };
        Math {
            cx,
            b,
            m,
            ft,
            it,
            wide,
        }
    }

    /// `f(x)` (or `pow(x, y)`; `y` is used only for Pow).
    pub fn emit(&self, f: MathFn, x: F<'ctx>, y: F<'ctx>) -> R<F<'ctx>> {
        match f {
            MathFn::Exp => self.exp(x, None),
            MathFn::Log => self.log(x),
            MathFn::Tanh => self.tanh(x),
            MathFn::Sigmoid => self.sigmoid(x),
            MathFn::Sin => self.sin_cos(x, false),
            MathFn::Cos => self.sin_cos(x, true),
            MathFn::Pow if self.wide => self.pow(x, y, true),
            MathFn::Pow => {
                // f32 pow runs in f64 so that y·log x keeps enough bits.
                let d = Math::new(self.cx, self.b, self.m, true);
                let xd = self.b.build_float_ext(x, d.ft, "")?;
                let yd = self.b.build_float_ext(y, d.ft, "")?;
                let r = d.pow(xd, yd, false)?;
                Ok(self.b.build_float_trunc(r, self.ft, "")?)
            }
        }
    }

    /// L-Mul (`tir::lmul`, bit-exact) keeping `m` mantissa bits (0: all): the integer
    /// code of `clif::math::emit_lmul`, straight-line, so the vectoriser widens it.
    pub fn lmul(&self, x: F<'ctx>, y: F<'ctx>, m: u8) -> R<F<'ctx>> {
        use inkwell::IntPredicate as IP;
        let b = self.b;
        let crate::tir::lmul::Consts { p, sign, inf, one, h, m, off, .. } = crate::tir::lmul::consts(self.wide, m);
        let (xb, yb) = (self.bits(x)?, self.bits(y)?);
        let xa = b.build_and(xb, self.ki(sign - 1), "")?;
        let ya = b.build_and(yb, self.ki(sign - 1), "")?;
        let sx = b.build_xor(xb, yb, "")?;
        let s = b.build_and(sx, self.ki(sign), "")?;
        let cmp = |op, a, c: u64| b.build_int_compare(op, a, self.ki(c), "");
        let zero = b.build_or(
            cmp(IP::SLT, xa, 1u64 << p)?,
            cmp(IP::SLT, ya, 1u64 << p)?,
            "",
        )?;
        let infs = b.build_or(cmp(IP::SGE, xa, inf)?, cmp(IP::SGE, ya, inf)?, "")?;
        let nan = b.build_or(cmp(IP::SGT, xa, inf)?, cmp(IP::SGT, ya, inf)?, "")?;
        let nan = b.build_or(nan, b.build_and(infs, zero, "")?, "")?;
        let (xt, yt) = if m < p {
            let keep = self.ki((sign - 1) & !((1u64 << (p - m)) - 1));
            (b.build_and(xa, keep, "")?, b.build_and(ya, keep, "")?)
        } else {
            (xa, ya)
        };
        // The sum minus 2^(w-2) wraps to its exact signed value; see `emit_lmul`.
        let v = b.build_int_add(xt, yt, "")?;
        let v = b.build_int_add(v, self.ki(off.wrapping_sub(one).wrapping_sub(h)), "")?;
        let over = cmp(IP::SGE, v, inf.wrapping_sub(h))?;
        let under = cmp(IP::SLT, v, (1u64 << p).wrapping_sub(h))?;
        let r = b.build_or(b.build_int_add(v, self.ki(h), "")?, s, "")?;
        let s_inf = b.build_or(s, self.ki(inf), "")?;
        let sel = |c, t: I<'ctx>, f: I<'ctx>| -> R<I<'ctx>> {
            Ok(b.build_select(c, t, f, "")?.into_int_value())
        };
        let r = sel(over, s_inf, r)?;
        let r = sel(b.build_or(under, zero, "")?, s, r)?;
        let r = sel(infs, s_inf, r)?;
        let r = sel(nan, self.ki(inf | (1u64 << (p - 1))), r)?;
        self.float(r)
    }

    // ---- Constants and thin instruction wrappers. ----

    /// A float constant rounded to the lane precision.
    fn k(&self, v: f64) -> F<'ctx> {
        if self.wide {
            self.ft.const_float(v)
        } else {
            self.ft.const_float(f64::from(v as f32))
        }
    }

    /// A float constant given by its exact bit patterns for f64 and for f32.
    fn kbits(&self, b64: u64, b32: u32) -> F<'ctx> {
        if self.wide {
            self.k(f64::from_bits(b64))
        } else {
            self.k(f64::from(f32::from_bits(b32)))
        }
    }

    /// An integer constant in the lane width (truncated to 32 bits for f32).
    fn ki(&self, v: u64) -> I<'ctx> {
        let v = if self.wide { v } else { u64::from(v as u32) };
        self.it.const_int(v, false)
    }

    fn bits(&self, x: F<'ctx>) -> R<I<'ctx>> {
        Ok(self.b.build_bit_cast(x, self.it, "")?.into_int_value())
    }

    fn float(&self, i: I<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_bit_cast(i, self.ft, "")?.into_float_value())
    }

    fn add(&self, a: F<'ctx>, b: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_float_add(a, b, "")?)
    }

    fn sub(&self, a: F<'ctx>, b: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_float_sub(a, b, "")?)
    }

    fn mul(&self, a: F<'ctx>, b: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_float_mul(a, b, "")?)
    }

    fn div(&self, a: F<'ctx>, b: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_float_div(a, b, "")?)
    }

    fn neg(&self, a: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_float_neg(a, "")?)
    }

    fn mulk(&self, a: F<'ctx>, c: f64) -> R<F<'ctx>> {
        self.mul(a, self.k(c))
    }

    fn addk(&self, a: F<'ctx>, c: f64) -> R<F<'ctx>> {
        self.add(a, self.k(c))
    }

    /// A call of a float intrinsic overloaded on the float type.
    fn intrinsic(&self, name: &str, args: &[F<'ctx>]) -> R<F<'ctx>> {
        call_intrinsic(self.b, self.m, name, self.ft, args)
    }

    fn fma(&self, a: F<'ctx>, b: F<'ctx>, c: F<'ctx>) -> R<F<'ctx>> {
        self.intrinsic("llvm.fma", &[a, b, c])
    }

    fn fabs(&self, a: F<'ctx>) -> R<F<'ctx>> {
        self.intrinsic("llvm.fabs", &[a])
    }

    /// Round to nearest, ties to even (the default rounding mode).
    fn nearest(&self, a: F<'ctx>) -> R<F<'ctx>> {
        self.intrinsic("llvm.rint", &[a])
    }

    fn trunc(&self, a: F<'ctx>) -> R<F<'ctx>> {
        self.intrinsic("llvm.trunc", &[a])
    }

    /// `|a|` with the sign of `s`.
    fn copysign(&self, a: F<'ctx>, s: F<'ctx>) -> R<F<'ctx>> {
        self.intrinsic("llvm.copysign", &[a, s])
    }

    fn cmp(&self, p: P, a: F<'ctx>, b: F<'ctx>) -> R<I<'ctx>> {
        Ok(self.b.build_float_compare(p, a, b, "")?)
    }

    fn cmpk(&self, p: P, a: F<'ctx>, c: f64) -> R<I<'ctx>> {
        self.cmp(p, a, self.k(c))
    }

    fn and(&self, a: I<'ctx>, b: I<'ctx>) -> R<I<'ctx>> {
        Ok(self.b.build_and(a, b, "")?)
    }

    fn sel(&self, m: I<'ctx>, a: F<'ctx>, b: F<'ctx>) -> R<F<'ctx>> {
        Ok(self.b.build_select(m, a, b, "")?.into_float_value())
    }

    fn selk(&self, m: I<'ctx>, a: f64, b: F<'ctx>) -> R<F<'ctx>> {
        self.sel(m, self.k(a), b)
    }

    /// Horner's rule with `fma`; `cs` lists the coefficients from the highest degree down.
    fn horner(&self, x: F<'ctx>, cs: &[f64]) -> R<F<'ctx>> {
        let mut p = self.k(cs[0]);
        for &c in &cs[1..] {
            p = self.fma(p, x, self.k(c))?;
        }
        Ok(p)
    }

    /// 2^k for an integral float `k` whose biased exponent is a normal one: adding
    /// 1.5·2^52 (+ bias) puts `k + bias` in the low mantissa bits, shifted into the
    /// exponent field.
    fn pow2(&self, k: F<'ctx>) -> R<F<'ctx>> {
        let (magic, shift) = if self.wide {
            (6755399441055744.0 + 1023.0, 52)
        } else {
            (12582912.0 + 127.0, 23)
        };
        let t = self.bits(self.addk(k, magic)?)?;
        let t = self.b.build_left_shift(t, self.ki(shift), "")?;
        self.float(t)
    }

    /// Clamps `x` into [lo, hi]; NaN passes through.
    fn clamp(&self, x: F<'ctx>, lo: f64, hi: f64) -> R<F<'ctx>> {
        let m = self.cmpk(P::OLT, x, lo)?;
        let x = self.selk(m, lo, x)?;
        let m = self.cmpk(P::OGT, x, hi)?;
        self.selk(m, hi, x)
    }

    // ---- exp ----

    /// `ln 2` split into a head and a tail; with `fma`, `x - k*LN2_HI` is exact.
    fn ln2_hi(&self) -> F<'ctx> {
        self.kbits(0x3fe62e42fefa39ef, 0x3f317218)
    }

    fn ln2_lo(&self) -> F<'ctx> {
        self.kbits(0x3c7abc9e3b39803f, 0xb102e308)
    }

    /// Reduces `x = k·ln2 + r` with |r| <= ln2/2 and returns (k, r); `tail` is an extra
    /// low-order part of `x` (double-double input from pow).
    fn reduce_ln2(&self, x: F<'ctx>, tail: Option<F<'ctx>>) -> R<(F<'ctx>, F<'ctx>)> {
        let t = self.mulk(x, std::f64::consts::LOG2_E)?;
        let k = self.nearest(t)?;
        let nk = self.neg(k)?;
        let r = self.fma(nk, self.ln2_hi(), x)?;
        let r = match tail {
            Some(t) => {
                let c = self.fma(nk, self.ln2_lo(), t)?;
                self.add(r, c)?
            }
            None => self.fma(nk, self.ln2_lo(), r)?,
        };
        Ok((k, r))
    }

    /// exp(x + tail). Overflow gives +inf, underflow 0 (with correctly scaled subnormals).
    fn exp(&self, x: F<'ctx>, tail: Option<F<'ctx>>) -> R<F<'ctx>> {
        let x = if self.wide {
            self.clamp(x, -746.0, 710.0)?
        } else {
            self.clamp(x, -104.0, 89.0)?
        };
        let (k, r) = self.reduce_ln2(x, tail)?;
        let deg = if self.wide { 13 } else { 7 };
        let cs: Vec<f64> = (0..=deg).rev().map(inv_fact).collect();
        let p = self.horner(r, &cs)?;
        // Two scale factors so that results near the subnormal range round only once.
        let k1 = self.nearest(self.mulk(k, 0.5)?)?;
        let k2 = self.sub(k, k1)?;
        let p = self.mul(p, self.pow2(k1)?)?;
        self.mul(p, self.pow2(k2)?)
    }

    /// expm1(u) for 0 <= u <= 40 (f64) / 20 (f32), without cancellation near 0.
    fn expm1_small_pos(&self, u: F<'ctx>) -> R<F<'ctx>> {
        let (k, r) = self.reduce_ln2(u, None)?;
        let deg = if self.wide { 13 } else { 7 };
        let cs: Vec<f64> = (2..=deg).rev().map(inv_fact).collect();
        let q = self.horner(r, &cs)?;
        let r2 = self.mul(r, r)?;
        let em = self.fma(r2, q, r)?;
        let s = self.pow2(k)?;
        let sm1 = self.addk(s, -1.0)?;
        self.fma(s, em, sm1)
    }

    // ---- tanh, sigmoid ----

    fn tanh(&self, x: F<'ctx>) -> R<F<'ctx>> {
        // tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2).
        let a = self.fabs(x)?;
        let a = if self.wide {
            self.clamp(a, 0.0, 20.0)?
        } else {
            self.clamp(a, 0.0, 10.0)?
        };
        let u = self.add(a, a)?;
        let e = self.expm1_small_pos(u)?;
        // d + dl = e + 2 exactly (TwoSum).
        let two = self.k(2.0);
        let d = self.add(e, two)?;
        let bb = self.sub(d, e)?;
        let a1 = self.sub(e, self.sub(d, bb)?)?;
        let b1 = self.sub(two, bb)?;
        let dl = self.add(a1, b1)?;
        let t = self.div_corrected(e, d, dl)?;
        self.copysign(t, x)
    }

    fn sigmoid(&self, x: F<'ctx>) -> R<F<'ctx>> {
        // With e = exp(-|x|) <= 1: 1/(1+e) for x >= 0 and e/(1+e) for x < 0.
        let a = self.fabs(x)?;
        let e = self.exp(self.neg(a)?, None)?;
        let d = self.addk(e, 1.0)?;
        let negx = self.cmpk(P::OLT, x, 0.0)?;
        let num = self.sel(negx, e, self.k(1.0))?;
        let dl = self.sub(e, self.addk(d, -1.0)?)?;
        self.div_corrected(num, d, dl)
    }

    /// num / (d + dl) where dl is the exact rounding error of d.
    fn div_corrected(&self, num: F<'ctx>, d: F<'ctx>, dl: F<'ctx>) -> R<F<'ctx>> {
        let q = self.div(num, d)?;
        let nq = self.neg(q)?;
        let rr = self.fma(nq, d, num)?;
        let rr = self.fma(nq, dl, rr)?;
        let c = self.div(rr, d)?;
        self.add(q, c)
    }

    // ---- log ----

    /// Splits a positive `x` into `x = 2^e · m` with m in [sqrt(1/2), sqrt(2)), returning
    /// (e as a float, m). Subnormals are scaled up first.
    fn log_reduce(&self, x: F<'ctx>) -> R<(F<'ctx>, F<'ctx>)> {
        let (min_normal, scale, scale_log2) = if self.wide {
            (f64::MIN_POSITIVE, 2f64.powi(54), 54.0)
        } else {
            (f64::from(f32::MIN_POSITIVE), 2f64.powi(24), 24.0)
        };
        let tiny = self.cmpk(P::OLT, x, min_normal)?;
        let xs = self.sel(tiny, self.mulk(x, scale)?, x)?;
        let adj = self.selk(tiny, scale_log2, self.k(0.0))?;
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
        let ix = self.b.build_int_add(self.bits(xs)?, self.ki(off), "")?;
        let eb = self.b.build_right_shift(ix, self.ki(shift), false, "")?;
        let ef = self.float(self.b.build_or(eb, self.ki(ebits), "")?)?;
        let ef = self.addk(ef, -ebias)?;
        let ef = self.sub(ef, adj)?;
        let mb = self.and(ix, self.ki(mant))?;
        let mb = self.b.build_int_add(mb, self.ki(sqrth), "")?;
        Ok((ef, self.float(mb)?))
    }

    /// Coefficients 2/(2n+1) of 2·atanh(s), highest first.
    fn atanh_coeffs(from: usize, to: usize) -> Vec<f64> {
        (from..=to)
            .rev()
            .map(|n| 2.0 / (2 * n + 1) as f64)
            .collect()
    }

    fn log(&self, x: F<'ctx>) -> R<F<'ctx>> {
        let (ef, m) = self.log_reduce(x)?;
        let f = self.addk(m, -1.0)?;
        let s = self.div(f, self.addk(f, 2.0)?)?;
        let z = self.mul(s, s)?;
        let nterms = if self.wide { 10 } else { 5 };
        let p = self.horner(z, &Self::atanh_coeffs(1, nterms))?;
        let rr = self.mul(z, p)?;
        let hfsq = self.mulk(self.mul(f, f)?, 0.5)?;
        let elo = self.mul(ef, self.ln2_lo())?;
        let t = self.add(hfsq, rr)?;
        let t1 = self.fma(s, t, elo)?;
        let t2 = self.sub(hfsq, t1)?;
        let rest = self.sub(f, t2)?;
        let res = self.fma(ef, self.ln2_hi(), rest)?;
        self.log_specials(x, res)
    }

    /// log(x<0 or NaN) = NaN, log(±0) = -inf, log(+inf) = +inf.
    fn log_specials(&self, x: F<'ctx>, res: F<'ctx>) -> R<F<'ctx>> {
        let bad = self.cmpk(P::ULT, x, 0.0)?;
        let res = self.selk(bad, f64::NAN, res)?;
        let zero = self.cmpk(P::OEQ, x, 0.0)?;
        let res = self.selk(zero, f64::NEG_INFINITY, res)?;
        let inf = self.cmpk(P::OEQ, x, f64::INFINITY)?;
        self.selk(inf, f64::INFINITY, res)
    }

    /// log(x) for x >= 0 as a double-double (hi, lo); used by f64 pow.
    fn log_dd(&self, x: F<'ctx>) -> R<(F<'ctx>, F<'ctx>)> {
        let (ef, m) = self.log_reduce(x)?;
        let f = self.addk(m, -1.0)?;
        // u = 2 + f exactly as (u, ul).
        let u = self.addk(f, 2.0)?;
        let ul = self.sub(f, self.addk(u, -2.0)?)?;
        // s = f/(2+f) as (sh, sl) from the exact division residual.
        let sh = self.div(f, u)?;
        let nsh = self.neg(sh)?;
        let rho = self.fma(nsh, u, f)?;
        let rho = self.fma(nsh, ul, rho)?;
        let sl = self.div(rho, u)?;
        // s² and s³ as double-doubles (low parts to first order).
        let s2h = self.mul(sh, sh)?;
        let s2l = self.fma(sh, sh, self.neg(s2h)?)?;
        let sh2 = self.add(sh, sh)?;
        let s2l = self.fma(sh2, sl, s2l)?;
        let s3h = self.mul(s2h, sh)?;
        let s3l = self.fma(s2h, sh, self.neg(s3h)?)?;
        let c = self.mul(s2h, sl)?;
        let c = self.fma(s2l, sh, c)?;
        let s3l = self.add(s3l, c)?;
        // T = (2/3)·s³ as a double-double.
        let c23h = self.kbits(0x3fe5555555555555, 0x3f2aaaab);
        let c23l = self.kbits(0x3c85555555555555, 0);
        let th = self.mul(c23h, s3h)?;
        let tl = self.fma(c23h, s3h, self.neg(th)?)?;
        let c = self.mul(c23l, s3h)?;
        let c = self.fma(c23h, s3l, c)?;
        let tl = self.add(tl, c)?;
        // U = s⁵·Q(s²).
        let q = self.horner(s2h, &Self::atanh_coeffs(2, 13))?;
        let c = self.mul(s3l, s2h)?;
        let c = self.fma(s3h, s2l, c)?;
        let s5 = self.fma(s3h, s2h, c)?;
        let uu = self.mul(s5, q)?;
        // log1p(f) = 2s + T + U.
        let ah = self.add(sh2, th)?;
        let d = self.sub(sh2, ah)?;
        let al = self.add(d, th)?;
        let sl2 = self.add(sl, sl)?;
        let lo = self.add(tl, uu)?;
        let lo = self.add(sl2, lo)?;
        let lo = self.add(al, lo)?;
        // e·ln2 as a double-double, then add.
        let ln2h = self.ln2_hi();
        let eh = self.mul(ef, ln2h)?;
        let el = self.fma(ef, ln2h, self.neg(eh)?)?;
        let el = self.fma(ef, self.ln2_lo(), el)?;
        let hi = self.add(eh, ah)?;
        let d = self.sub(eh, hi)?;
        let err = self.add(d, ah)?;
        let lo2 = self.add(el, lo)?;
        let lo = self.add(err, lo2)?;
        // Renormalise so that y·lo stays tiny.
        let sum = self.add(hi, lo)?;
        let d = self.sub(sum, hi)?;
        let lo = self.sub(lo, d)?;
        let hi = self.log_specials(x, sum)?;
        Ok((hi, lo))
    }

    // ---- pow ----

    /// pow(x, y) = exp(y·log|x|) with C99 special cases; `dd` selects the double-double
    /// log (f64 results).
    fn pow(&self, x: F<'ctx>, y: F<'ctx>, dd: bool) -> R<F<'ctx>> {
        let ax = self.fabs(x)?;
        let r = if dd {
            let (lh, ll) = self.log_dd(ax)?;
            let th = self.mul(y, lh)?;
            let tl = self.fma(y, lh, self.neg(th)?)?;
            let tl = self.fma(y, ll, tl)?;
            // When y·log|x| is huge or not finite the tail is meaningless (inf - inf).
            let ok = self.cmpk(P::OLT, self.fabs(th)?, 1000.0)?;
            let tl = self.sel(ok, tl, self.k(0.0))?;
            self.exp(th, Some(tl))?
        } else {
            let l = self.log(ax)?;
            self.exp(self.mul(y, l)?, None)?
        };
        // Negative x: odd integer y flips the sign, non-integer y gives NaN.
        let ty = self.trunc(y)?;
        let y_int = self.cmp(P::OEQ, ty, y)?;
        let y_frac = self.cmp(P::UNE, ty, y)?;
        let yh = self.mulk(y, 0.5)?;
        let half_frac = self.cmp(P::UNE, self.trunc(yh)?, yh)?;
        let y_odd = self.and(y_int, half_frac)?;
        let sx = self.copysign(self.k(1.0), x)?;
        let x_signed = self.cmpk(P::OLT, sx, 0.0)?;
        let flip = self.and(x_signed, y_odd)?;
        let r = self.sel(flip, self.neg(r)?, r)?;
        // Only finite negative x: pow(-inf, y) is ±0 or ±inf like C's pow.
        let x_neg = self.cmpk(P::OLT, x, 0.0)?;
        let x_fin = self.cmpk(P::OGT, x, f64::NEG_INFINITY)?;
        let bad = self.and(self.and(x_neg, y_frac)?, x_fin)?;
        let r = self.selk(bad, f64::NAN, r)?;
        // |x| = 1 with y = ±inf gives 1.
        let ax1 = self.cmpk(P::OEQ, ax, 1.0)?;
        let yinf = self.cmpk(P::OEQ, self.fabs(y)?, f64::INFINITY)?;
        let r = self.selk(self.and(ax1, yinf)?, 1.0, r)?;
        let nan = self.cmp(P::UNO, x, y)?;
        let r = self.selk(nan, f64::NAN, r)?;
        // pow(1, y) = 1 and pow(x, ±0) = 1 even for NaN arguments.
        let x1 = self.cmpk(P::OEQ, x, 1.0)?;
        let r = self.selk(x1, 1.0, r)?;
        let y0 = self.cmpk(P::OEQ, y, 0.0)?;
        self.selk(y0, 1.0, r)
    }

    // ---- sin, cos ----

    fn sin_cos(&self, x: F<'ctx>, cos: bool) -> R<F<'ctx>> {
        // x = k·π/2 + r with π/2 in three parts.
        let k = self.nearest(self.mulk(x, std::f64::consts::FRAC_2_PI)?)?;
        let nk = self.neg(k)?;
        let p1 = self.kbits(0x3ff921fb54442d18, 0x3fc90fdb);
        let p2 = self.kbits(0x3c91a62633145c07, 0xb33bbd2e);
        let p3 = self.kbits(0xb91f1976b7ed8fbc, 0xa6f72ced);
        let r = self.fma(nk, p1, x)?;
        let r = self.fma(nk, p2, r)?;
        let r = self.fma(nk, p3, r)?;
        let (ns, nc) = if self.wide { (8, 8) } else { (4, 5) };
        let z = self.mul(r, r)?;
        let sc: Vec<f64> = (1..=ns)
            .rev()
            .map(|n| if n % 2 == 0 { 1.0 } else { -1.0 } * inv_fact(2 * n + 1))
            .collect();
        let ps = self.horner(z, &sc)?;
        let rz = self.mul(r, z)?;
        let s = self.fma(rz, ps, r)?;
        let cc: Vec<f64> = (1..=nc)
            .rev()
            .map(|n| if n % 2 == 0 { 1.0 } else { -1.0 } * inv_fact(2 * n))
            .collect();
        let pc = self.horner(z, &cc)?;
        let c = self.fma(z, pc, self.k(1.0))?;
        // Quadrant q = k mod 4 (cos uses k + 1): bit 0 swaps sin/cos, bit 1 flips the sign.
        let magic = if self.wide {
            6755399441055744.0
        } else {
            12582912.0
        };
        let kq = self.addk(k, if cos { magic + 1.0 } else { magic })?;
        let kb = self.bits(kq)?;
        let bit0 = self.and(kb, self.ki(1))?;
        let swap = self
            .b
            .build_int_compare(inkwell::IntPredicate::NE, bit0, self.ki(0), "")?;
        let v = self.sel(swap, c, s)?;
        let bit1 = self.and(kb, self.ki(2))?;
        let sign = self
            .b
            .build_left_shift(bit1, self.ki(if self.wide { 62 } else { 30 }), "")?;
        let vb = self.b.build_xor(self.bits(v)?, sign, "")?;
        let res = self.float(vb)?;
        let res = if cos {
            res
        } else {
            // sin(±0) = ±0.
            let z = self.cmpk(P::OEQ, x, 0.0)?;
            self.sel(z, x, res)?
        };
        // Beyond the limit the reduction has lost all bits of r; NaN beats garbage.
        let far = self.cmpk(P::OGT, self.fabs(x)?, trig_limit(self.wide))?;
        self.selk(far, f64::NAN, res)
    }
}

/// A call of intrinsic `name` overloaded on `ty`, with float arguments.
pub(super) fn call_intrinsic<'ctx>(
    b: &Builder<'ctx>,
    m: &Module<'ctx>,
    name: &str,
    ty: FloatType<'ctx>,
    args: &[F<'ctx>],
) -> R<F<'ctx>> {
    let f = Intrinsic::find(name)
        .and_then(|i| i.get_declaration(m, &[ty.into()]))
        .ok_or_else(|| super::LlvmError::Internal(format!("no intrinsic {name}")))?;
    let args: Vec<_> = args.iter().map(|&a| a.into()).collect();
    call_float(b, f, &args, name)
}

/// The float result of a call.
pub(super) fn call_float<'ctx>(
    b: &Builder<'ctx>,
    f: inkwell::values::FunctionValue<'ctx>,
    args: &[inkwell::values::BasicMetadataValueEnum<'ctx>],
    what: &str,
) -> R<F<'ctx>> {
    match b.build_call(f, args, "")?.try_as_basic_value() {
        inkwell::values::ValueKind::Basic(v) if v.is_float_value() => Ok(v.into_float_value()),
        _ => Err(super::LlvmError::Internal(format!(
            "{what} returned no float"
        ))),
    }
}

#[cfg(test)]
mod tests;
