//! What the math-library accuracy tests of every backend share: the references (std,
//! and a double-double sigmoid), errors in ulps, and the inputs (dense grids, random
//! finite bit patterns, special values and thresholds). Each backend's tests compile the
//! functions their way and measure with these (`clif/math.rs`, `llvm/math/tests.rs`).

use crate::codegen::clif::math::{trig_limit, MathFn};

/// Sigmoid in f64 with a double-double division, so its error is exp's alone.
pub(crate) fn sigmoid_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let e = (-x.abs()).exp();
    let h = 1.0 + e;
    let l = e - (h - 1.0);
    let num = if x < 0.0 { e } else { 1.0 };
    let q = num / h;
    let r = (-q).mul_add(h, num) - q * l;
    q + r / h
}

pub(crate) fn reference(f: MathFn, x: f64, y: f64) -> f64 {
    match f {
        MathFn::Exp => x.exp(),
        MathFn::Log => x.ln(),
        MathFn::Tanh => x.tanh(),
        MathFn::Sigmoid => sigmoid_ref(x),
        MathFn::Sin => x.sin(),
        MathFn::Cos => x.cos(),
        MathFn::Pow => x.powf(y),
    }
}

/// Error of an f64 result in ulps (distance in representable values).
pub(crate) fn ulps_f64(got: f64, want: f64) -> f64 {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if want.is_infinite() || got.is_infinite() || (want == 0.0 && got == 0.0) {
        return if got.to_bits() == want.to_bits() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let ord = |v: f64| {
        let b = v.to_bits() as i64;
        if b < 0 {
            -(b & i64::MAX)
        } else {
            b
        }
    };
    (ord(got) - ord(want)).unsigned_abs() as f64
}

/// Error of an f32 result in (fractional) ulps of the exact value `want`.
pub(crate) fn ulps_f32(got: f64, want: f64) -> f64 {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let w32 = want as f32 as f64;
    if w32.is_infinite() || got.is_infinite() || (want == 0.0 && got == 0.0) {
        return if got.to_bits() == w32.to_bits() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let e = ((want.abs().to_bits() >> 52) as i64 - 1023).max(-126);
    (got - want).abs() / 2f64.powi(e as i32 - 23)
}

/// xorshift64*, deterministic.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545f4914f6cdd1d)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random finite float of the given precision (uniform over bit patterns).
    pub(crate) fn finite(&mut self, wide: bool) -> f64 {
        loop {
            let v = if wide {
                f64::from_bits(self.next())
            } else {
                f32::from_bits(self.next() as u32) as f64
            };
            if v.is_finite() {
                return v;
            }
        }
    }
}

/// Rounds to the precision under test.
pub(crate) fn rnd(v: f64, wide: bool) -> f64 {
    if wide {
        v
    } else {
        v as f32 as f64
    }
}

/// Values near `v` in the precision under test: v itself and a few neighbours.
pub(crate) fn around(v: f64, wide: bool, out: &mut Vec<f64>) {
    let v = rnd(v, wide);
    let (mut up, mut dn) = (v, v);
    out.push(v);
    for _ in 0..3 {
        if wide {
            up = up.next_up();
            dn = dn.next_down();
        } else {
            up = (up as f32).next_up() as f64;
            dn = (dn as f32).next_down() as f64;
        }
        out.push(up);
        out.push(dn);
    }
}

pub(crate) fn specials(wide: bool) -> Vec<f64> {
    let (minp, sub, maxsub, max) = if wide {
        (
            f64::MIN_POSITIVE,
            5e-324,
            f64::MIN_POSITIVE.next_down(),
            f64::MAX,
        )
    } else {
        let mp = f32::MIN_POSITIVE;
        (
            mp as f64,
            1e-45f32 as f64,
            mp.next_down() as f64,
            f32::MAX as f64,
        )
    };
    let mut v = vec![
        0.0,
        f64::INFINITY,
        f64::NAN,
        minp,
        sub,
        maxsub,
        max,
        1.0,
        0.5,
        2.0,
        3.0,
        1e-10,
        1e10,
        1e30,
        1e-30,
        std::f64::consts::PI,
        std::f64::consts::FRAC_PI_2,
        std::f64::consts::LN_2,
    ];
    v.extend(v.clone().into_iter().map(|x| -x));
    v.into_iter().map(|x| rnd(x, wide)).collect()
}

/// Linear grid of n points over [a, b].
pub(crate) fn linear(a: f64, b: f64, n: usize, wide: bool, out: &mut Vec<f64>) {
    out.extend((0..n).map(|i| rnd(a + (b - a) * i as f64 / (n - 1) as f64, wide)));
}

/// ±2^t for t on a grid over [lo, hi].
pub(crate) fn log_grid(lo: f64, hi: f64, n: usize, wide: bool, out: &mut Vec<f64>) {
    for i in 0..n {
        let t = lo + (hi - lo) * i as f64 / (n - 1) as f64;
        let v = rnd(t.exp2(), wide);
        out.push(v);
        out.push(-v);
    }
}

/// Test inputs for a unary function: specials, grids and random finite bit patterns.
pub(crate) fn unary_inputs(f: MathFn, wide: bool) -> Vec<f64> {
    let mut xs = specials(wide);
    let mut rng = Rng(0x9e3779b97f4a7c15 ^ (f as u64) << 8 ^ wide as u64);
    let (emin, emax) = if wide {
        (-1074.0, 1023.99)
    } else {
        (-149.0, 127.99)
    };
    log_grid(emin, emax, 20_000, wide, &mut xs);
    match f {
        MathFn::Exp | MathFn::Sigmoid => {
            let t: &[f64] = if wide {
                &[
                    709.782712893384,
                    -708.3964185322641,
                    -745.1332191019411,
                    -744.440_071_921_381_2,
                ]
            } else {
                &[88.72284, -87.33655, -103.97208, -103.27893]
            };
            for &v in t {
                around(v, wide, &mut xs);
            }
            let r = if wide { 760.0 } else { 110.0 };
            linear(-r, r, 200_000, wide, &mut xs);
            linear(-1.0, 1.0, 50_000, wide, &mut xs);
        }
        MathFn::Log => {
            linear(0.5, 2.0, 200_000, wide, &mut xs);
            for i in 1..2000 {
                around(1.0 + i as f64 * 1e-9, wide, &mut xs);
                around(1.0 - i as f64 * 1e-9, wide, &mut xs);
            }
        }
        MathFn::Tanh => {
            linear(-25.0, 25.0, 200_000, wide, &mut xs);
            linear(-1.0, 1.0, 50_000, wide, &mut xs);
        }
        MathFn::Sin | MathFn::Cos => {
            let lim = trig_limit(wide);
            linear(-10.0, 10.0, 200_000, wide, &mut xs);
            linear(-lim, lim, 100_000, wide, &mut xs);
            // Multiples of π/2 are where the reduction loses most.
            let kmax = lim / std::f64::consts::FRAC_PI_2;
            for i in 0..4000 {
                let k = if i < 1000 {
                    i as f64
                } else {
                    (rng.unit() * kmax).round()
                };
                around(k * std::f64::consts::FRAC_PI_2, wide, &mut xs);
            }
            for v in [lim, 1e10, 1e13, 1e20, 1e300] {
                around(v, wide, &mut xs);
                around(-v, wide, &mut xs);
            }
        }
        MathFn::Pow => unreachable!(),
    }
    let lim = match f {
        MathFn::Sin | MathFn::Cos => trig_limit(wide),
        _ => f64::INFINITY,
    };
    let mut n = 0;
    while n < 500_000 {
        let v = rng.finite(wide);
        if v.abs() <= lim {
            xs.push(v);
            n += 1;
        }
    }
    xs
}

/// Test inputs for pow: special pairs, random x with y keeping y·ln x in range,
/// negative x with integer y, x near 1 with large y, and random bit pairs.
pub(crate) fn pow_inputs(wide: bool) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(0x2545f4914f6cdd1d ^ wide as u64);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let sp = specials(wide);
    let mut yspecial = sp.clone();
    yspecial.extend([
        5.0,
        -5.0,
        0.25,
        -0.25,
        1e20,
        -1e20,
        9007199254740993.0,
        4503599627370497.0,
    ]);
    yspecial.extend([16777217.0, 8388609.0, -8388609.0, 1.5, -1.5, 2.5]);
    for &x in &sp {
        for &y in &yspecial {
            xs.push(x);
            ys.push(rnd(y, wide));
        }
    }
    let tmax = if wide { 760.0 } else { 110.0 };
    for i in 0..300_000 {
        let x = match i % 3 {
            0 => rng.finite(wide).abs(),
            1 => rnd(0.5 + 1.5 * rng.unit(), wide),
            _ => rnd(1.0 + (rng.unit() - 0.5) * 1e-6, wide),
        };
        let l = x.ln();
        let y = if l == 0.0 || !l.is_finite() {
            rng.unit() * 10.0
        } else {
            (rng.unit() * 2.0 - 1.0) * tmax / l.abs()
        };
        xs.push(x);
        ys.push(rnd(y, wide));
    }
    for _ in 0..50_000 {
        let x = -rnd(rng.unit() * 10.0, wide);
        let y = ((rng.unit() * 2.0 - 1.0) * 200.0).round();
        xs.push(x);
        ys.push(y);
    }
    for _ in 0..50_000 {
        xs.push(rng.finite(wide));
        ys.push(rng.finite(wide));
    }
    (xs, ys)
}

