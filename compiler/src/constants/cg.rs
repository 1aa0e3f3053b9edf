//! The real-basis Clebsch-Gordan tensor. The convention (basis, phase, normalisation,
//! sign) is documented on the parent module, `crate::constants`.

use std::ops::{Add, Mul};

/// The largest degree `l` accepted for any of the three arguments.
pub const MAX_DEGREE: u32 = 6;

/// Magnitude at or below which `nonzeros` counts an entry as zero.
pub const NONZERO_TOLERANCE: f64 = 1e-12;

/// Entries of the normalised tensor at or below this magnitude are zero in exact
/// arithmetic. Today the cancelling complex contributions are equal products and cancel
/// exactly; flushing keeps those zeros exact `+0.0` even if the arithmetic changes, because
/// the planner relies on the sparsity. The smallest true entry up to `MAX_DEGREE` is about
/// 6e-3, far above it.
const FLUSH_TO_ZERO: f64 = 1e-14;

/// Why no Clebsch-Gordan tensor exists for the requested degrees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CgError {
    #[error(
        "Clebsch-Gordan degree {name} = {degree} is too large: the largest supported degree \
         is {max}"
    )]
    DegreeTooLarge {
        /// Which argument: `l1`, `l2` or `l3`.
        name: &'static str,
        degree: u32,
        max: u32,
    },
    #[error(
        "no Clebsch-Gordan tensor for degrees (l1, l2, l3) = ({l1}, {l2}, {l3}): they \
         violate the triangle rule |l1 - l2| <= l3 <= l1 + l2"
    )]
    Triangle { l1: u32, l2: u32, l3: u32 },
}

/// The shape `[2l1+1, 2l2+1, 2l3+1]` of the tensor for degrees `(l1, l2, l3)`. It does
/// not check the degrees, so it also gives the shape of a tensor that does not exist.
pub fn cg_shape(l1: u32, l2: u32, l3: u32) -> [usize; 3] {
    [dim(l1), dim(l2), dim(l3)]
}

/// The real-basis Clebsch-Gordan tensor for degrees `(l1, l2, l3)`, of shape
/// `cg_shape(l1, l2, l3)`, row-major, with unit Frobenius norm; see `crate::constants`
/// for the exact convention. Errors if a degree exceeds `MAX_DEGREE` or the degrees
/// violate the triangle rule.
pub fn clebsch_gordan(l1: u32, l2: u32, l3: u32) -> Result<Vec<f64>, CgError> {
    let coupling = real_basis_coupling(l1, l2, l3)?;
    // The imaginary parts vanish by construction (the phase (-i)^l of the change of
    // basis); the tests check that they stay at rounding level.
    let mut values: Vec<f64> = coupling.iter().map(|z| z.re).collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    for v in &mut values {
        let scaled = *v / norm;
        *v = if scaled.abs() <= FLUSH_TO_ZERO { 0.0 } else { scaled };
    }
    Ok(values)
}

/// The number of entries whose magnitude exceeds `NONZERO_TOLERANCE` (1e-12).
pub fn nonzeros(values: &[f64]) -> usize {
    values.iter().filter(|v| v.abs() > NONZERO_TOLERANCE).count()
}

/// A complex number, just enough for the change of basis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Complex {
    pub re: f64,
    pub im: f64,
}

impl Complex {
    const ZERO: Complex = Complex { re: 0.0, im: 0.0 };

    fn new(re: f64, im: f64) -> Complex {
        Complex { re, im }
    }

    fn conj(self) -> Complex {
        Complex { re: self.re, im: -self.im }
    }

    fn is_zero(self) -> bool {
        self.re == 0.0 && self.im == 0.0
    }

    fn scale(self, k: f64) -> Complex {
        Complex { re: self.re * k, im: self.im * k }
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex { re: self.re + o.re, im: self.im + o.im }
    }
}

impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex { re: self.re * o.re - self.im * o.im, im: self.re * o.im + self.im * o.re }
    }
}

fn dim(l: u32) -> usize {
    // Saturating keeps the shape query total even for absurd degrees on 32-bit targets.
    (l as usize).saturating_mul(2).saturating_add(1)
}

/// Checks the degrees: each at most `MAX_DEGREE`, then the triangle rule.
fn validate(l1: u32, l2: u32, l3: u32) -> Result<(), CgError> {
    for (name, degree) in [("l1", l1), ("l2", l2), ("l3", l3)] {
        if degree > MAX_DEGREE {
            return Err(CgError::DegreeTooLarge { name, degree, max: MAX_DEGREE });
        }
    }
    if l3 < l1.abs_diff(l2) || l3 > l1 + l2 {
        return Err(CgError::Triangle { l1, l2, l3 });
    }
    Ok(())
}

/// The tensor before normalisation, still complex: `sum Q1[m1,a] Q2[m2,b] conj(Q3[m3,c])
/// <l1 m1; l2 m2 | l3 m3>`. Its imaginary parts are zero up to rounding.
pub(super) fn real_basis_coupling(l1: u32, l2: u32, l3: u32) -> Result<Vec<Complex>, CgError> {
    validate(l1, l2, l3)?;
    let [n1, n2, n3] = cg_shape(l1, l2, l3);
    let (q1, q2, q3) = (real_to_complex(l1), real_to_complex(l2), real_to_complex(l3));
    // Each real index mixes only complex m = +-|m|, so iterating over the nonzero entries
    // of the change of basis keeps the sum to at most eight terms per entry.
    let columns1 = nonzero_columns(&q1, n1);
    let columns2 = nonzero_columns(&q2, n2);
    let rows3 = nonzero_rows(&q3, n3);
    let (l1i, l2i, l3i) = (i64::from(l1), i64::from(l2), i64::from(l3));

    let mut out = vec![Complex::ZERO; n1 * n2 * n3];
    for (a, column1) in columns1.iter().enumerate() {
        for (b, column2) in columns2.iter().enumerate() {
            for &(r1, z1) in column1 {
                for &(r2, z2) in column2 {
                    let (m1, m2) = (r1 as i64 - l1i, r2 as i64 - l2i);
                    let m3 = m1 + m2;
                    if m3.abs() > l3i {
                        continue;
                    }
                    let coefficient = su2_coefficient(l1, m1, l2, m2, l3);
                    if coefficient == 0.0 {
                        continue;
                    }
                    let z12 = (z1 * z2).scale(coefficient);
                    for &(c, z3) in &rows3[(m3 + l3i) as usize] {
                        let at = (a * n2 + b) * n3 + c;
                        out[at] = out[at] + z12 * z3.conj();
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `Q_l = (-i)^l U_l`, row-major `(2l+1) x (2l+1)`, rows indexed by complex `m + l`, columns
/// by real `m + l`. `U_l` expresses the complex harmonics through the real ones (see the
/// parent module); the factor `(-i)^l` is e3nn's, and it is what makes `C` real.
fn real_to_complex(l: u32) -> Vec<Complex> {
    let n = dim(l);
    let li = l as usize;
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let mut q = vec![Complex::ZERO; n * n];
    q[li * n + li] = Complex::new(1.0, 0.0);
    for mu in 1..=li {
        let sign = if mu % 2 == 0 { 1.0 } else { -1.0 };
        // Y_l^{-mu} = (Y_{l,mu} - i Y_{l,-mu}) / sqrt2.
        q[(li - mu) * n + (li + mu)] = Complex::new(h, 0.0);
        q[(li - mu) * n + (li - mu)] = Complex::new(0.0, -h);
        // Y_l^{mu} = (-1)^mu (Y_{l,mu} + i Y_{l,-mu}) / sqrt2.
        q[(li + mu) * n + (li + mu)] = Complex::new(sign * h, 0.0);
        q[(li + mu) * n + (li - mu)] = Complex::new(0.0, sign * h);
    }
    let phase = match l % 4 {
        0 => Complex::new(1.0, 0.0),
        1 => Complex::new(0.0, -1.0),
        2 => Complex::new(-1.0, 0.0),
        _ => Complex::new(0.0, 1.0),
    };
    q.into_iter().map(|z| z * phase).collect()
}

/// For each column of the square matrix `q` (side `n`), its nonzero `(row, value)` pairs.
fn nonzero_columns(q: &[Complex], n: usize) -> Vec<Vec<(usize, Complex)>> {
    (0..n).map(|c| (0..n).map(|r| (r, q[r * n + c])).filter(|(_, z)| !z.is_zero()).collect()).collect()
}

/// For each row of the square matrix `q` (side `n`), its nonzero `(column, value)` pairs.
fn nonzero_rows(q: &[Complex], n: usize) -> Vec<Vec<(usize, Complex)>> {
    (0..n).map(|r| (0..n).map(|c| (c, q[r * n + c])).filter(|(_, z)| !z.is_zero()).collect()).collect()
}

/// The Clebsch-Gordan coefficient `<l1 m1; l2 m2 | l3 m1+m2>` (Condon-Shortley phases), for
/// degrees that satisfy the triangle rule. It uses the binomial form of Racah's formula,
/// `sqrt((2l3+1) prod (l+-m)! / (A! B! C! (l1+l2+l3+1)!)) * sum_k (-1)^k binom(A,k)
/// binom(B, l1-m1-k) binom(C, l2+m2-k)` with `A = l1+l2-l3`, `B = l1-l2+l3`,
/// `C = -l1+l2+l3`: the alternating sum is an exact integer, so no cancellation is lost.
pub(super) fn su2_coefficient(l1: u32, m1: i64, l2: u32, m2: i64, l3: u32) -> f64 {
    let (j1, j2, j3) = (i64::from(l1), i64::from(l2), i64::from(l3));
    let m3 = m1 + m2;
    if m1.abs() > j1 || m2.abs() > j2 || m3.abs() > j3 {
        return 0.0;
    }
    let (a, b, c) = (j1 + j2 - j3, j1 - j2 + j3, -j1 + j2 + j3);
    if a < 0 || b < 0 || c < 0 {
        return 0.0;
    }
    let mut sum: i128 = 0;
    for k in 0..=a {
        let term = binomial(a, k) * binomial(b, j1 - m1 - k) * binomial(c, j2 + m2 - k);
        sum += if k % 2 == 0 { term } else { -term };
    }
    if sum == 0 {
        return 0.0;
    }
    let numerator = (2 * j3 + 1) as f64
        * factorial(j1 + m1)
        * factorial(j1 - m1)
        * factorial(j2 + m2)
        * factorial(j2 - m2)
        * factorial(j3 + m3)
        * factorial(j3 - m3);
    let denominator = factorial(a) * factorial(b) * factorial(c) * factorial(j1 + j2 + j3 + 1);
    (numerator / denominator).sqrt() * sum as f64
}

/// `binom(n, k)`, zero outside `0 <= k <= n`. Exact: each partial product is itself a
/// binomial coefficient, and the arguments are at most `2 * MAX_DEGREE`.
fn binomial(n: i64, k: i64) -> i128 {
    if k < 0 || k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut value: i128 = 1;
    for i in 0..k {
        value = value * i128::from(n - i) / i128::from(i + 1);
    }
    value
}

/// `n!` as f64, for `n >= 0`. Exact up to `22!` (every partial product has an odd part
/// below 2^53), which covers the largest argument, `3 * MAX_DEGREE + 1`.
fn factorial(n: i64) -> f64 {
    (1..=n).map(|k| k as f64).product()
}
