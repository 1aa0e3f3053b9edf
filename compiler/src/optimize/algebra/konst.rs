//! Known constant values of e-classes, exact where they can be.
//!
//! Folding constants in f64 depends on the order of the factors:
//! `1e30 · 90 · (1/90)` rounds to `1.0000000000000002e30` while `1e30 · (1/90) · 90`
//! gives `1e30`. A centred sum `Σ (x - Σx / N)` distributed into `Σx - N·(1/N)·Σx`
//! then no longer cancels, and a large scale turns the rounding into a large error.
//! So every constant also carries an exact rational when it has one (integers, dyadic
//! literals, and what sums, products and reciprocals of them give); folding uses the
//! rational and rounds once at the end. Arithmetic that overflows `i128` falls back to
//! f64.

/// A reduced fraction `num / den` with `den > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

/// Magnitudes up to 2^120 keep every product of two reduced parts checkable.
const LIMIT: f64 = 1.329_227_995_784_916e36;

impl Ratio {
    pub fn new(num: i128, den: i128) -> Option<Ratio> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let (num, den) = if den < 0 { (num.checked_neg()? / g, den.checked_neg()? / g) } else { (num / g, den / g) };
        Some(Ratio { num, den })
    }

    pub fn integer(v: i128) -> Ratio {
        Ratio { num: v, den: 1 }
    }

        /// The exact value of a finite f64 whose binary expansion ends at most 64 places
    /// after the point (integers, halves, 0.1 as the dyadic it rounds to), when it fits.
    pub fn from_f64(v: f64) -> Option<Ratio> {
        if !v.is_finite() || v.abs() >= LIMIT {
            return None;
        }
        let mut scaled = v;
        let mut den: i128 = 1;
        for _ in 0..64 {
            if scaled.fract() == 0.0 {
                return Ratio::new(scaled as i128, den);
            }
            scaled *= 2.0;
            den *= 2;
            if scaled.abs() >= LIMIT {
                return None;
            }
        }
        None
    }

    pub fn parts(self) -> (i128, i128) {
        (self.num, self.den)
    }

    /// The nearest f64 when both parts are exact in f64, else within an ulp or two.
    pub fn value(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn mul(self, o: Ratio) -> Option<Ratio> {
        // Cross-reduce first so that the products stay small.
        let g1 = gcd(self.num, o.den).max(1);
        let g2 = gcd(o.num, self.den).max(1);
        let num = (self.num / g1).checked_mul(o.num / g2)?;
        let den = (self.den / g2).checked_mul(o.den / g1)?;
        Ratio::new(num, den)
    }

    pub fn add(self, o: Ratio) -> Option<Ratio> {
        let g = gcd(self.den, o.den).max(1);
        let num = self.num.checked_mul(o.den / g)?.checked_add(o.num.checked_mul(self.den / g)?)?;
        let den = self.den.checked_mul(o.den / g)?;
        Ratio::new(num, den)
    }

    pub fn recip(self) -> Option<Ratio> {
        Ratio::new(self.den, self.num)
    }
}

/// A constant: its f64 value and, when known, the exact rational it rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Konst {
    pub value: f64,
    pub exact: Option<Ratio>,
}

impl Konst {
    pub fn from_f64(value: f64) -> Konst {
        Konst { value, exact: Ratio::from_f64(value) }
    }

    pub fn from_ratio(r: Ratio) -> Konst {
        Konst { value: r.value(), exact: Some(r) }
    }

    /// Combines exactly when both sides are exact and nothing overflows, else in f64.
    fn combine(self, o: Konst, exact: impl Fn(Ratio, Ratio) -> Option<Ratio>, float: impl Fn(f64, f64) -> f64) -> Konst {
        match self.exact.zip(o.exact).and_then(|(a, b)| exact(a, b)) {
            Some(r) => Konst::from_ratio(r),
            None => Konst { value: float(self.value, o.value), exact: None },
        }
    }

    pub fn mul(self, o: Konst) -> Konst {
        self.combine(o, Ratio::mul, |a, b| a * b)
    }

    pub fn add(self, o: Konst) -> Konst {
        self.combine(o, Ratio::add, |a, b| a + b)
    }

    pub fn recip(self) -> Konst {
        match self.exact.and_then(Ratio::recip) {
            Some(r) => Konst::from_ratio(r),
            None => Konst { value: 1.0 / self.value, exact: None },
        }
    }

    pub fn product(ks: impl IntoIterator<Item = Konst>) -> Konst {
        ks.into_iter().fold(Konst::from_f64(1.0), Konst::mul)
    }

    pub fn sum(ks: impl IntoIterator<Item = Konst>) -> Konst {
        ks.into_iter().fold(Konst::from_f64(0.0), Konst::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_independent_of_the_order_of_the_factors() {
        let n = Konst::from_f64(90.0);
        let big = Konst::from_f64(1e30);
        // In f64 this order rounds to 1.0000000000000002e30.
        assert_ne!(1e30 * 90.0 * (1.0 / 90.0), 1e30);
        assert_eq!(big.mul(n).mul(n.recip()).value, 1e30);
        assert_eq!(n.recip().mul(n).value, 1.0);
        let third = Konst::from_f64(3.0).recip();
        assert_eq!(Konst::sum([third, third, third]).value, 1.0);
        assert_eq!(Konst::sum([big, Konst::from_f64(-1e30)]).value, 0.0);
    }

    #[test]
    fn tiny_literals_stay_inexact_and_overflow_falls_back() {
        // 0.1 is the dyadic 3602879701896397 / 2^55, exactly; 1e-30 needs 2^100.
        assert_eq!(Konst::from_f64(0.1).exact, Ratio::new(3602879701896397, 1 << 55));
        assert_eq!(Konst::from_f64(1e-30).exact, None);
        assert_eq!(Konst::from_f64(0.375).exact, Ratio::new(3, 8));
        assert_eq!(Konst::from_f64(f64::INFINITY).exact, None);
        let huge = Konst::from_f64(1e36);
        let p = huge.mul(huge);
        assert_eq!(p.exact, None);
        assert_eq!(p.value, 1e36 * 1e36);
        assert_eq!(Konst::from_f64(0.0).recip().value, f64::INFINITY);
        assert_eq!(Ratio::new(4, -6), Ratio::new(-2, 3));
    }
}
