//! L-Mul (Luo & Sun 2024, "Addition is All You Need"): a float product computed by
//! adding bit patterns as integers. This file is the one scalar reference that the
//! evaluator, the loop interpreter and every code generator are tested against.
//!
//! Semantics of `lmul(x, y, m)` for a float type with `p` stored mantissa bits:
//! - Both mantissas are truncated (rounded toward zero) to `min(m, p)` bits; without `m`
//!   nothing is truncated (`m = p`).
//! - On the magnitudes, `bits(|x|) + bits(|y|) - bits(1.0) + 2^(p - l(m))`: exponents
//!   add, mantissas add with the offset `2^-l(m)` and a mantissa carry rolls into the
//!   exponent, where `l(m)` is `m` for `m <= 3`, 3 for `m = 4` and 4 above. The sign is
//!   the XOR of the signs.
//! - Subnormal inputs count as zero (as with DAZ): a zero gives a zero with the XOR sign.
//! - A NaN input, or an infinity times a zero (or subnormal), gives the canonical quiet
//!   NaN; otherwise an infinity gives an infinity with the XOR sign.
//! - A result beyond the largest finite value is an infinity; one below the smallest
//!   normal is a zero (no subnormal results). Both keep the XOR sign.

/// The offset exponent `l(m)` of the paper for `m` mantissa bits.
pub fn offset_bits(m: u32) -> u32 {
    match m {
        0..=3 => m,
        4 => 3,
        _ => 4,
    }
}

/// The constants the generated L-Mul code works with, for f32 (`wide` false) or f64
/// bit patterns keeping `m` mantissa bits (0: all), shared by the Cranelift and LLVM
/// emitters so that both compute the same thing as [`lmul_bits`].
pub struct Consts {
    /// Mantissa bits of the type.
    pub p: u32,
    /// The sign bit, +inf's pattern, 1.0's pattern, and 2^(w-2).
    pub sign: u64,
    pub inf: u64,
    pub one: u64,
    pub h: u64,
    /// Mantissa bits kept, and the offset 2^-l(m) in mantissa units.
    pub m: u32,
    pub off: u64,
}

pub fn consts(wide: bool, m: u8) -> Consts {
    let (w, p) = if wide { (64u32, 52u32) } else { (32, 23) };
    let m = if m == 0 { p } else { u32::from(m).min(p) };
    Consts {
        p,
        sign: 1u64 << (w - 1),
        inf: ((1u64 << (w - 1 - p)) - 1) << p,
        one: ((1u64 << (w - 2 - p)) - 1) << p,
        h: 1u64 << (w - 2),
        m,
        off: 1u64 << (p - offset_bits(m)),
    }
}

/// L-Mul on the bit patterns of a float with `p` mantissa bits and `e` exponent bits
/// (sign in bit `p + e`); `m` is the emulated mantissa width, `None` for all of them.
pub fn lmul_bits(x: u64, y: u64, p: u32, e: u32, m: Option<u32>) -> u64 {
    let sign = 1u64 << (p + e);
    let abs = sign - 1;
    let inf = ((1u64 << e) - 1) << p;
    let one = ((1u64 << (e - 1)) - 1) << p;
    let min_normal = 1u64 << p;
    let s = (x ^ y) & sign;
    let (xa, ya) = (x & abs, y & abs);
    let zero = xa < min_normal || ya < min_normal;
    if xa > inf || ya > inf || ((xa == inf || ya == inf) && zero) {
        return inf | (1u64 << (p - 1));
    }
    if xa == inf || ya == inf {
        return s | inf;
    }
    if zero {
        return s;
    }
    let m = m.unwrap_or(p).clamp(1, p);
    let keep = abs & !((1u64 << (p - m)) - 1);
    let off = 1u64 << (p - offset_bits(m));
    // Both magnitudes are below 2^63, so the sum fits a u128 without any care.
    let r = u128::from(xa & keep) + u128::from(ya & keep) + u128::from(off);
    let one = u128::from(one);
    if r < one + u128::from(min_normal) {
        s
    } else if r - one >= u128::from(inf) {
        s | inf
    } else {
        s | (r - one) as u64
    }
}

pub fn lmul_f32(x: f32, y: f32, m: Option<u32>) -> f32 {
    f32::from_bits(lmul_bits(x.to_bits().into(), y.to_bits().into(), 23, 8, m) as u32)
}

pub fn lmul_f64(x: f64, y: f64, m: Option<u32>) -> f64 {
    f64::from_bits(lmul_bits(x.to_bits(), y.to_bits(), 52, 11, m))
}

/// L-Mul in the precision of `T` (f32 or f64, told apart by size).
pub fn lmul<T: num_traits::Float>(x: T, y: T, m: Option<u32>) -> T {
    if std::mem::size_of::<T>() == 4 {
        let r = lmul_f32(
            x.to_f32().unwrap_or(f32::NAN),
            y.to_f32().unwrap_or(f32::NAN),
            m,
        );
        T::from(r).unwrap_or_else(T::nan)
    } else {
        let r = lmul_f64(
            x.to_f64().unwrap_or(f64::NAN),
            y.to_f64().unwrap_or(f64::NAN),
            m,
        );
        T::from(r).unwrap_or_else(T::nan)
    }
}

/// The largest `m` that `lmul(x, y, m)` accepts for a dtype: its stored mantissa bits.
pub fn max_bits(wide: bool) -> u32 {
    if wide {
        52
    } else {
        23
    }
}

/// How the products of a plan are computed: exactly, or as L-Mul (`--mul lmul`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MulMode {
    #[default]
    Exact,
    /// Every product is `lmul` keeping this many mantissa bits (0: all of them).
    Lmul(u8),
}

impl MulMode {
    /// Reads `exact`, `lmul` or `lmulM` (M from 1 to 52), the spellings of `--mul`.
    pub fn parse(s: &str) -> Result<MulMode, String> {
        let bad = || {
            format!("unknown multiplication `{s}`: use exact, lmul, or lmulM for an M-bit mantissa (lmul3, lmul4)")
        };
        match s {
            "exact" => Ok(MulMode::Exact),
            "lmul" => Ok(MulMode::Lmul(0)),
            _ => match s.strip_prefix("lmul").map(str::parse::<u8>) {
                Some(Ok(m @ 1..=52)) => Ok(MulMode::Lmul(m)),
                _ => Err(bad()),
            },
        }
    }

    /// `program` with every product of its statements as a chain of `lmul` calls,
    /// left to right (a plan's step multiplies two operands, so no order is invented).
    /// Factors that are compile-time constants (literals and dims, such as `1 / sqrt(d)`)
    /// stay exact scalings: L-Mul by a power of two would add its offset to every value.
    pub fn apply(self, program: &super::Function) -> super::Function {
        use super::Expr;
        let MulMode::Lmul(m) = self else {
            return program.clone();
        };
        let mut f = program.clone();
        for s in &mut f.stmts {
            let rhs = std::mem::replace(&mut s.rhs, Expr::Lit(0.0));
            s.rhs = rhs.map_nodes(&mut |e| match e {
                Expr::Mul(xs) => {
                    let (mut consts, vars): (Vec<Expr>, Vec<Expr>) =
                        xs.into_iter().partition(is_constant);
                    let mut it = vars.into_iter();
                    if let Some(first) = it.next() {
                        consts.push(it.fold(first, |a, b| {
                            Expr::Call(super::Builtin::Lmul(m), vec![a, b])
                        }));
                    }
                    match consts.len() {
                        1 => consts.pop().unwrap_or(Expr::Lit(1.0)),
                        _ => Expr::Mul(consts),
                    }
                }
                other => other,
            });
        }
        f
    }
}

/// Whether `e` reads no tensor and no index: a value known when compiling.
pub fn is_constant(e: &super::Expr) -> bool {
    let mut indices = Vec::new();
    e.free_indices(&mut indices);
    let mut reads = 0;
    e.for_each_access(&mut |_, _| reads += 1);
    indices.is_empty() && reads == 0
}

impl std::fmt::Display for MulMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MulMode::Exact => f.write_str("exact"),
            MulMode::Lmul(0) => f.write_str("lmul"),
            MulMode::Lmul(m) => write!(f, "lmul{m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmul_matches_the_paper_on_exact_cases() {
        // 1.5 * 1.5: mantissas 0.5 + 0.5 + 2^-4 carry into the exponent: 2 * 1.0625.
        assert_eq!(lmul_f32(1.5, 1.5, None), 2.125);
        // 1.25 * 1.5 = 1 + 0.75 + 1/16 without a carry.
        assert_eq!(lmul_f32(1.25, 1.5, None), 1.8125);
        assert_eq!(lmul_f64(1.25, 1.5, None), 1.8125);
        // Powers of two only gain the offset: 2 * 4 = 8 * (1 + 2^-l(m)).
        assert_eq!(lmul_f32(2.0, 4.0, Some(3)), 9.0);
        assert_eq!(lmul_f32(2.0, 4.0, Some(4)), 9.0);
        assert_eq!(lmul_f32(2.0, 4.0, Some(2)), 10.0);
        assert_eq!(lmul_f32(-2.0, 4.0, None), -8.5);
        // Truncation to 3 bits drops 1/16 from 1.0625 before the sum.
        assert_eq!(lmul_f32(1.0625, 1.0, Some(3)), 1.125);
        assert_eq!(lmul_f64(1.0625, 1.0, Some(3)), 1.125);
    }

    #[test]
    fn lmul_special_values() {
        let nan = |v: f32| v.to_bits() == 0x7fc0_0000;
        assert_eq!(lmul_f32(0.0, -3.0, None).to_bits(), (-0.0f32).to_bits());
        assert_eq!(lmul_f32(-0.0, -3.0, None).to_bits(), 0.0f32.to_bits());
        assert!(nan(lmul_f32(f32::INFINITY, 0.0, None)));
        assert!(nan(lmul_f32(f32::INFINITY, 1e-40, None)));
        assert!(nan(lmul_f32(f32::NAN, 1.0, None)));
        assert!(nan(lmul_f32(-f32::NAN, f32::INFINITY, None)));
        assert_eq!(lmul_f32(f32::NEG_INFINITY, 2.0, None), f32::NEG_INFINITY);
        assert_eq!(lmul_f32(1e-40, 1e30, None).to_bits(), 0);
        assert_eq!(lmul_f32(f32::MAX, 2.0, None), f32::INFINITY);
        assert_eq!(lmul_f32(-f32::MAX, f32::MAX, Some(3)), f32::NEG_INFINITY);
        assert_eq!(lmul_f32(f32::MIN_POSITIVE, 0.5, None).to_bits(), 0);
        assert_eq!(
            lmul_f32(-f32::MIN_POSITIVE, 1.0, None),
            -f32::MIN_POSITIVE * 1.0625
        );
        assert_eq!(lmul_f64(f64::MAX, f64::MAX, None), f64::INFINITY);
        assert_eq!(
            lmul_f64(f64::MIN_POSITIVE, f64::MIN_POSITIVE, None).to_bits(),
            0
        );
        assert_eq!(
            lmul_f64(f64::NAN, 0.0, None).to_bits(),
            0x7ff8_0000_0000_0000
        );
    }

    /// `x` rounded to `k` mantissa bits, to nearest with ties to even (an fp8-like
    /// format with f32's exponent range).
    fn round_mantissa(x: f32, k: u32) -> f32 {
        let drop = 23 - k;
        let b = x.to_bits();
        let half = 1u32 << (drop - 1);
        let odd = (b >> drop) & 1;
        f32::from_bits((b + half - 1 + odd) & !((1u32 << drop) - 1))
    }

    /// Mean and max relative error against the exact product over random operands with
    /// uniform mantissas, exponents in 2^-8..2^8 and random signs.
    fn error_stats(f: impl Fn(f32, f32) -> f32) -> (f64, f64) {
        let mut rng = crate::eval::testutil::Rng::new(7);
        let mut draw = || {
            let r = rng.bits();
            f32::from_bits(((r >> 32) as u32 & 0x807f_ffff) | ((119 + (r % 17) as u32) << 23))
        };
        let (mut sum, mut max, n) = (0.0, 0.0f64, 200_000);
        for _ in 0..n {
            let (x, y) = (draw(), draw());
            let exact = f64::from(x) * f64::from(y);
            let e = ((f64::from(f(x, y)) - exact) / exact).abs();
            sum += e;
            max = max.max(e);
        }
        (sum / f64::from(n), max)
    }

    /// The error distribution of L-Mul against exact products, next to the formats the
    /// paper compares it with (fp8 e4m3 and e5m2 multiplications: operands and product
    /// rounded to 3 and 2 mantissa bits). The figures are in `docs/lmul.md`; run with
    /// `--nocapture` to print them.
    #[test]
    fn lmul_error_distribution_matches_the_paper() {
        let full = error_stats(|x, y| lmul_f32(x, y, None));
        let m4 = error_stats(|x, y| lmul_f32(x, y, Some(4)));
        let m3 = error_stats(|x, y| lmul_f32(x, y, Some(3)));
        let e4m3 =
            error_stats(|x, y| round_mantissa(round_mantissa(x, 3) * round_mantissa(y, 3), 3));
        let e5m2 =
            error_stats(|x, y| round_mantissa(round_mantissa(x, 2) * round_mantissa(y, 2), 2));
        for (name, (mean, max)) in [
            ("lmul", full),
            ("lmul m=4", m4),
            ("lmul m=3", m3),
            ("fp8 e4m3", e4m3),
            ("fp8 e5m2", e5m2),
        ] {
            println!(
                "{name:10} mean {:.4}% max {:.3}%",
                mean * 100.0,
                max * 100.0
            );
        }
        // Without truncation the error is that of 1 + a + b + 2^-4 against (1 + a)(1 + b)
        // for uniform a, b: at most 1 - 2 / 1.46875^2 = 7.30% below (a = b = 0.46875).
        assert!(full.1 < 0.0730 && full.1 > 0.072, "{full:?}");
        assert!(full.0 > 0.02 && full.0 < 0.035, "{full:?}");
        // The paper: 4-bit L-Mul is about as precise as e4m3 and 3-bit L-Mul beats e5m2.
        assert!(m4.0 < e4m3.0, "{m4:?} vs {e4m3:?}");
        assert!(m3.0 < e5m2.0, "{m3:?} vs {e5m2:?}");
        assert!(full.0 <= m4.0 && m4.0 <= m3.0);
    }
}
