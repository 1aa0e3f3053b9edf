//! Tests of the Clebsch-Gordan tensors: shapes and errors, orthogonality, equivariance
//! under random rotations (with Wigner matrices measured from real spherical harmonics,
//! independently of the construction), known values and structural zeros.

use super::cg::{real_basis_coupling, su2_coefficient};
use super::*;
use std::f64::consts::PI;

/// Every triple of degrees up to `MAX_DEGREE` that satisfies the triangle rule.
fn all_triples() -> Vec<(u32, u32, u32)> {
    let mut triples = Vec::new();
    for l1 in 0..=MAX_DEGREE {
        for l2 in 0..=MAX_DEGREE {
            for l3 in l1.abs_diff(l2)..=(l1 + l2).min(MAX_DEGREE) {
                triples.push((l1, l2, l3));
            }
        }
    }
    triples
}

fn cg(l1: u32, l2: u32, l3: u32) -> Vec<f64> {
    clebsch_gordan(l1, l2, l3).expect("a valid triple")
}

pub(super) fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------
// Small numerics used only by the tests: a seeded generator, rotations, real spherical
// harmonics, a linear solver and the Wigner matrices measured with them.
// ---------------------------------------------------------------------------------------

/// SplitMix64: a fixed seed keeps the "random" rotations reproducible.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub(super) fn symmetric(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// A point on the unit sphere, by rejection from the cube (uniform on the sphere).
    pub(super) fn unit_vector(&mut self) -> [f64; 3] {
        loop {
            let p = [self.symmetric(), self.symmetric(), self.symmetric()];
            let r2 = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
            if r2 > 0.01 && r2 <= 1.0 {
                let r = r2.sqrt();
                return [p[0] / r, p[1] / r, p[2] / r];
            }
        }
    }

    /// A rotation matrix from a uniformly random unit quaternion.
    pub(super) fn rotation(&mut self) -> [[f64; 3]; 3] {
        let (w, x, y, z) = loop {
            let q = [self.symmetric(), self.symmetric(), self.symmetric(), self.symmetric()];
            let r2: f64 = q.iter().map(|v| v * v).sum();
            if r2 > 0.01 && r2 <= 1.0 {
                let r = r2.sqrt();
                break (q[0] / r, q[1] / r, q[2] / r, q[3] / r);
            }
        };
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ]
    }
}

pub(super) fn rotate(r: &[[f64; 3]; 3], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| r[i][0] * p[0] + r[i][1] * p[1] + r[i][2] * p[2])
}

fn matmul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// The orthonormal real spherical harmonics of degree `l` at the unit vector `p`, indexed
/// by `m + l`, with polar axis `z`, `sin(|m| phi)` for `m < 0`, `cos(m phi)` for `m > 0`
/// and no Condon-Shortley sign: the basis the module documents. Written from the
/// textbook definition, independently of the code under test.
pub(super) fn real_sh(l: u32, p: [f64; 3]) -> Vec<f64> {
    let l = l as usize;
    let (x, y, z) = (p[0], p[1], p[2]);
    let sin_theta = (x * x + y * y).sqrt();
    let phi = y.atan2(x);
    let mut out = vec![0.0; 2 * l + 1];
    for m in 0..=l {
        // P_l^m(cos theta) without the Condon-Shortley sign, by the standard recurrence in l.
        let mut p_mm = 1.0;
        for k in 1..=m {
            p_mm *= (2 * k - 1) as f64 * sin_theta;
        }
        let p_lm = if l == m {
            p_mm
        } else {
            let (mut low, mut high) = (p_mm, (2 * m + 1) as f64 * z * p_mm);
            for ll in m + 2..=l {
                let next = ((2 * ll - 1) as f64 * z * high - (ll + m - 1) as f64 * low) / (ll - m) as f64;
                low = high;
                high = next;
            }
            high
        };
        let ratio: f64 = ((l - m + 1)..=(l + m)).map(|k| 1.0 / k as f64).product();
        let norm = ((2 * l + 1) as f64 / (4.0 * PI) * ratio).sqrt();
        if m == 0 {
            out[l] = norm * p_lm;
        } else {
            let k = 2f64.sqrt() * norm * p_lm;
            out[l + m] = k * (m as f64 * phi).cos();
            out[l - m] = k * (m as f64 * phi).sin();
        }
    }
    out
}

/// Solves `a x = b` for square `a` (side `n`) and `b` with `cols` columns, both row-major,
/// by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize, cols: usize) -> Vec<f64> {
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .expect("a nonempty range");
        assert!(a[pivot * n + col].abs() > 1e-12, "singular system");
        for k in 0..n {
            a.swap(col * n + k, pivot * n + k);
        }
        for k in 0..cols {
            b.swap(col * cols + k, pivot * cols + k);
        }
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
            for k in 0..cols {
                b[row * cols + k] -= f * b[col * cols + k];
            }
        }
    }
    let mut x = vec![0.0; n * cols];
    for row in (0..n).rev() {
        for k in 0..cols {
            let s: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j * cols + k]).sum();
            x[row * cols + k] = (b[row * cols + k] - s) / a[row * n + row];
        }
    }
    x
}

/// The real Wigner matrix `D_l(R)` (row-major, side `2l+1`) defined by
/// `Y_l(R p) = D_l(R) Y_l(p)`, measured by least squares over random points:
/// with `A[:, j] = Y_l(p_j)` and `B[:, j] = Y_l(R p_j)`, `D^T = (A A^T)^-1 A B^T`.
pub(super) fn wigner_d(l: u32, r: &[[f64; 3]; 3], rng: &mut Rng) -> Vec<f64> {
    let n = 2 * l as usize + 1;
    let points: Vec<[f64; 3]> = (0..3 * n).map(|_| rng.unit_vector()).collect();
    let a: Vec<Vec<f64>> = points.iter().map(|&p| real_sh(l, p)).collect();
    let b: Vec<Vec<f64>> = points.iter().map(|&p| real_sh(l, rotate(r, p))).collect();
    let mut gram = vec![0.0; n * n];
    let mut cross = vec![0.0; n * n];
    for j in 0..points.len() {
        for u in 0..n {
            for v in 0..n {
                gram[u * n + v] += a[j][u] * a[j][v];
                cross[u * n + v] += a[j][u] * b[j][v];
            }
        }
    }
    let dt = solve(gram, cross, n, n);
    let mut d = vec![0.0; n * n];
    for u in 0..n {
        for v in 0..n {
            d[u * n + v] = dt[v * n + u];
        }
    }
    d
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    c
}

/// The largest entry of `sum_{a',b'} D1[a,a'] D2[b,b'] C[a',b',c'] - sum_c C[a,b,c] D3[c,c']`.
pub(super) fn intertwining_error(c: &[f64], shape: [usize; 3], d1: &[f64], d2: &[f64], d3: &[f64]) -> f64 {
    let [n1, n2, n3] = shape;
    // t[a,b',c'] = sum_a' D1[a,a'] C[a',b',c'].
    let mut t = vec![0.0; n1 * n2 * n3];
    for a in 0..n1 {
        for ap in 0..n1 {
            let d = d1[a * n1 + ap];
            for bc in 0..n2 * n3 {
                t[a * n2 * n3 + bc] += d * c[ap * n2 * n3 + bc];
            }
        }
    }
    let mut lhs = vec![0.0; n1 * n2 * n3];
    for a in 0..n1 {
        for b in 0..n2 {
            for bp in 0..n2 {
                let d = d2[b * n2 + bp];
                for k in 0..n3 {
                    lhs[(a * n2 + b) * n3 + k] += d * t[(a * n2 + bp) * n3 + k];
                }
            }
        }
    }
    let mut rhs = vec![0.0; n1 * n2 * n3];
    for ab in 0..n1 * n2 {
        for k in 0..n3 {
            for kp in 0..n3 {
                rhs[ab * n3 + kp] += c[ab * n3 + k] * d3[k * n3 + kp];
            }
        }
    }
    max_abs_diff(&lhs, &rhs)
}

// ---------------------------------------------------------------------------------------
// (a) Shapes and errors.
// ---------------------------------------------------------------------------------------

#[test]
fn shapes_follow_the_degrees() {
    assert_eq!(cg_shape(1, 2, 3), [3, 5, 7]);
    assert_eq!(cg_shape(0, 0, 0), [1, 1, 1]);
    for (l1, l2, l3) in all_triples() {
        let [n1, n2, n3] = cg_shape(l1, l2, l3);
        assert_eq!([n1, n2, n3], [2 * l1 as usize + 1, 2 * l2 as usize + 1, 2 * l3 as usize + 1]);
        assert_eq!(cg(l1, l2, l3).len(), n1 * n2 * n3, "({l1}, {l2}, {l3})");
    }
}

#[test]
fn degrees_above_the_maximum_are_errors() {
    let big = MAX_DEGREE + 1;
    assert_eq!(
        clebsch_gordan(big, big, 0),
        Err(CgError::DegreeTooLarge { name: "l1", degree: big, max: MAX_DEGREE })
    );
    assert_eq!(
        clebsch_gordan(1, big, big),
        Err(CgError::DegreeTooLarge { name: "l2", degree: big, max: MAX_DEGREE })
    );
    assert_eq!(
        clebsch_gordan(MAX_DEGREE, 1, big),
        Err(CgError::DegreeTooLarge { name: "l3", degree: big, max: MAX_DEGREE })
    );
    assert!(clebsch_gordan(u32::MAX, u32::MAX, u32::MAX).is_err());
    let message = clebsch_gordan(0, big, big).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "Clebsch-Gordan degree l2 = {big} is too large: the largest supported degree is {MAX_DEGREE}"
        )
    );
}

#[test]
fn triangle_violations_are_errors() {
    for (l1, l2, l3) in [(1, 1, 3), (0, 1, 2), (0, 2, 0), (3, 0, 2), (2, 5, 2), (1, 4, 6), (6, 0, 5)] {
        assert_eq!(clebsch_gordan(l1, l2, l3), Err(CgError::Triangle { l1, l2, l3 }));
    }
    assert_eq!(
        clebsch_gordan(1, 1, 3).unwrap_err().to_string(),
        "no Clebsch-Gordan tensor for degrees (l1, l2, l3) = (1, 1, 3): they violate the \
         triangle rule |l1 - l2| <= l3 <= l1 + l2"
    );
    // The boundary cases of the rule are valid.
    for (l1, l2, l3) in [(2, 5, 3), (2, 4, 6), (6, 0, 6), (3, 3, 0), (3, 3, 6)] {
        assert!(clebsch_gordan(l1, l2, l3).is_ok(), "({l1}, {l2}, {l3})");
    }
}

// ---------------------------------------------------------------------------------------
// Realness, determinism and the complex coefficients the construction starts from.
// ---------------------------------------------------------------------------------------

#[test]
fn the_phase_makes_every_tensor_real() {
    for (l1, l2, l3) in all_triples() {
        let z = real_basis_coupling(l1, l2, l3).expect("a valid triple");
        let largest = z.iter().map(|v| v.re.abs()).fold(0.0, f64::max);
        let imaginary = z.iter().map(|v| v.im.abs()).fold(0.0, f64::max);
        assert!(largest > 0.1, "({l1}, {l2}, {l3}) has no real part");
        assert!(imaginary <= 1e-14 * largest, "({l1}, {l2}, {l3}): imaginary part {imaginary}");
    }
}

#[test]
fn results_are_deterministic_and_have_no_negative_zeros() {
    for (l1, l2, l3) in all_triples() {
        let first = cg(l1, l2, l3);
        let second = cg(l1, l2, l3);
        assert!(first.iter().zip(&second).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(first.iter().all(|v| v.is_finite()));
        assert!(first.iter().filter(|v| **v == 0.0).all(|v| v.is_sign_positive()));
    }
}

#[test]
fn complex_coefficients_match_textbook_values() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
    let s = f64::sqrt;
    assert!(close(su2_coefficient(0, 0, 0, 0, 0), 1.0));
    assert!(close(su2_coefficient(1, 1, 1, -1, 0), 1.0 / s(3.0)));
    assert!(close(su2_coefficient(1, 0, 1, 0, 0), -1.0 / s(3.0)));
    assert!(close(su2_coefficient(1, 1, 1, 0, 1), 1.0 / s(2.0)));
    assert!(close(su2_coefficient(1, 0, 1, 1, 1), -1.0 / s(2.0)));
    assert!(close(su2_coefficient(1, 0, 1, 0, 1), 0.0));
    assert!(close(su2_coefficient(1, 1, 1, 1, 2), 1.0));
    assert!(close(su2_coefficient(1, 1, 1, 0, 2), 1.0 / s(2.0)));
    assert!(close(su2_coefficient(1, 0, 1, 0, 2), s(2.0 / 3.0)));
    assert!(close(su2_coefficient(2, 0, 2, 0, 0), 1.0 / s(5.0)));
    assert!(close(su2_coefficient(2, 1, 1, -1, 1), s(3.0 / 10.0)));
    assert!(close(su2_coefficient(2, 2, 2, -2, 2), s(2.0 / 7.0)));
    // Out-of-range projections give zero rather than garbage.
    assert_eq!(su2_coefficient(1, 2, 1, 0, 2), 0.0);
    assert_eq!(su2_coefficient(1, 1, 1, 1, 1), 0.0);
}

// ---------------------------------------------------------------------------------------
// (b) Normalisation, orthogonality and completeness.
// ---------------------------------------------------------------------------------------

#[test]
fn columns_are_orthogonal_with_norm_one_over_2l3_plus_1() {
    for (l1, l2, l3) in all_triples() {
        let c = cg(l1, l2, l3);
        let [n1, n2, n3] = cg_shape(l1, l2, l3);
        let frobenius: f64 = c.iter().map(|v| v * v).sum();
        assert!((frobenius - 1.0).abs() < 1e-14, "({l1}, {l2}, {l3}): norm^2 {frobenius}");
        for k in 0..n3 {
            for kp in 0..n3 {
                let dot: f64 = (0..n1 * n2).map(|ij| c[ij * n3 + k] * c[ij * n3 + kp]).sum();
                let expected = if k == kp { 1.0 / n3 as f64 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-14, "({l1}, {l2}, {l3}) columns {k}, {kp}: {dot}");
            }
        }
    }
}

#[test]
fn all_l3_together_are_complete() {
    // For l1 + l2 <= MAX_DEGREE every l3 is available, and the (2l3+1)-weighted tensors
    // form an orthogonal change of basis of the product space.
    for l1 in 0..=MAX_DEGREE {
        for l2 in 0..=MAX_DEGREE - l1 {
            let (n1, n2) = (2 * l1 as usize + 1, 2 * l2 as usize + 1);
            let mut gram = vec![0.0; (n1 * n2) * (n1 * n2)];
            for l3 in l1.abs_diff(l2)..=l1 + l2 {
                let c = cg(l1, l2, l3);
                let n3 = 2 * l3 as usize + 1;
                for ij in 0..n1 * n2 {
                    for ijp in 0..n1 * n2 {
                        let s: f64 = (0..n3).map(|k| c[ij * n3 + k] * c[ijp * n3 + k]).sum();
                        gram[ij * n1 * n2 + ijp] += n3 as f64 * s;
                    }
                }
            }
            for ij in 0..n1 * n2 {
                for ijp in 0..n1 * n2 {
                    let expected = if ij == ijp { 1.0 } else { 0.0 };
                    let got = gram[ij * n1 * n2 + ijp];
                    assert!((got - expected).abs() < 1e-13, "({l1}, {l2}) at {ij}, {ijp}: {got}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (c) Equivariance under random rotations.
// ---------------------------------------------------------------------------------------

#[test]
fn measured_wigner_matrices_are_a_real_orthogonal_representation() {
    // The equivariance test is only as good as its D matrices, so check them first:
    // orthogonal, multiplicative, and Y_l(R q) = D Y_l(q) at fresh points.
    let mut rng = Rng(7);
    for l in 0..=MAX_DEGREE {
        let n = 2 * l as usize + 1;
        let (r1, r2) = (rng.rotation(), rng.rotation());
        let d1 = wigner_d(l, &r1, &mut rng);
        let d2 = wigner_d(l, &r2, &mut rng);
        let d12 = wigner_d(l, &matmul3(&r1, &r2), &mut rng);
        let mut d1t = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                d1t[i * n + j] = d1[j * n + i];
            }
        }
        let identity: Vec<f64> = (0..n * n).map(|ij| if ij / n == ij % n { 1.0 } else { 0.0 }).collect();
        assert!(max_abs_diff(&matmul(&d1, &d1t, n), &identity) < 1e-11, "l = {l}: not orthogonal");
        assert!(max_abs_diff(&matmul(&d1, &d2, n), &d12) < 1e-11, "l = {l}: not multiplicative");
        for _ in 0..5 {
            let q = rng.unit_vector();
            let (y, y_rotated) = (real_sh(l, q), real_sh(l, rotate(&r1, q)));
            let predicted: Vec<f64> = (0..n).map(|i| (0..n).map(|j| d1[i * n + j] * y[j]).sum()).collect();
            assert!(max_abs_diff(&predicted, &y_rotated) < 1e-11, "l = {l}: harmonics not closed");
        }
    }
}

#[test]
fn degree_one_components_are_y_z_x() {
    // The documented axis convention: D_1(R) is R written in the component order (y, z, x).
    let mut rng = Rng(11);
    let order = [1, 2, 0];
    for _ in 0..3 {
        let r = rng.rotation();
        let d = wigner_d(1, &r, &mut rng);
        for a in 0..3 {
            for b in 0..3 {
                assert!((d[a * 3 + b] - r[order[a]][order[b]]).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn tensors_intertwine_random_rotations() {
    let mut rng = Rng(2024);
    for _ in 0..3 {
        let r = rng.rotation();
        let d: Vec<Vec<f64>> = (0..=MAX_DEGREE).map(|l| wigner_d(l, &r, &mut rng)).collect();
        for (l1, l2, l3) in all_triples() {
            let c = cg(l1, l2, l3);
            let (i1, i2, i3) = (l1 as usize, l2 as usize, l3 as usize);
            let error = intertwining_error(&c, cg_shape(l1, l2, l3), &d[i1], &d[i2], &d[i3]);
            assert!(error < 1e-10, "({l1}, {l2}, {l3}): equivariance error {error}");
        }
    }
}

#[test]
fn the_equivariance_check_rejects_wrong_tensors() {
    // Guards against a check that always passes: a wrong relative sign between two
    // real components, or a wrong degree, must be caught.
    let mut rng = Rng(99);
    let r = rng.rotation();
    let d: Vec<Vec<f64>> = (0..=3).map(|l| wigner_d(l, &r, &mut rng)).collect();
    let mut c = cg(1, 2, 3);
    let shape = cg_shape(1, 2, 3);
    assert!(intertwining_error(&c, shape, &d[1], &d[2], &d[3]) < 1e-10);
    // Flip the sign of every entry with first index 0 (component y of degree 1).
    for v in c.iter_mut().take(shape[1] * shape[2]) {
        *v = -*v;
    }
    assert!(intertwining_error(&c, shape, &d[1], &d[2], &d[3]) > 1e-3);
    // (1,1,2) passes against D_1, D_1, D_2 but fails once two components of the degree-2
    // basis are swapped, so the check also sees the order of the components.
    let c112 = cg(1, 1, 2);
    let mut swapped = d[2].clone();
    for j in 0..5 {
        swapped.swap(3 * 5 + j, 4 * 5 + j);
    }
    for i in 0..5 {
        swapped.swap(i * 5 + 3, i * 5 + 4);
    }
    assert!(intertwining_error(&c112, cg_shape(1, 1, 2), &d[1], &d[1], &d[2]) < 1e-10);
    assert!(intertwining_error(&c112, cg_shape(1, 1, 2), &d[1], &d[1], &swapped) > 1e-3);
}

// ---------------------------------------------------------------------------------------
// (d) Known values.
// ---------------------------------------------------------------------------------------

#[test]
fn identity_couplings_are_identity_over_sqrt_dim() {
    for l in 0..=MAX_DEGREE {
        let n = 2 * l as usize + 1;
        let identity: Vec<f64> =
            (0..n * n).map(|ab| if ab / n == ab % n { 1.0 / (n as f64).sqrt() } else { 0.0 }).collect();
        // (l, l, 0), (0, l, l) and (l, 0, l) are all the identity, laid out differently.
        assert!(max_abs_diff(&cg(l, l, 0), &identity) < 1e-15, "({l}, {l}, 0)");
        assert!(max_abs_diff(&cg(0, l, l), &identity) < 1e-15, "(0, {l}, {l})");
        assert!(max_abs_diff(&cg(l, 0, l), &identity) < 1e-15, "({l}, 0, {l})");
    }
}

#[test]
fn one_one_one_is_the_levi_civita_symbol() {
    let c = cg(1, 1, 1);
    let k = 1.0 / 6f64.sqrt();
    for a in 0..3 {
        for b in 0..3 {
            for e in 0..3 {
                // epsilon[a,b,e] for indices in 0..3: +1 on even permutations of (0,1,2).
                let (x, y, z) = (a as i32, b as i32, e as i32);
                let epsilon = f64::from((x - y) * (y - z) * (z - x)) / 2.0;
                assert!((c[(a * 3 + b) * 3 + e] - k * epsilon).abs() < 1e-15, "[{a}, {b}, {e}]");
            }
        }
    }
}

#[test]
fn one_one_two_matches_closed_forms() {
    // The full tensor, cross-checked against a Python re-implementation of e3nn's
    // construction; the nonzero entries are -1/sqrt30, +-1/sqrt10 and 2/sqrt30.
    let (a, b, two) = (1.0 / 30f64.sqrt(), 1.0 / 10f64.sqrt(), 2.0 / 30f64.sqrt());
    let expected: [((usize, usize, usize), f64); 11] = [
        ((0, 0, 2), -a),
        ((0, 0, 4), -b),
        ((0, 1, 1), b),
        ((0, 2, 0), b),
        ((1, 0, 1), b),
        ((1, 1, 2), two),
        ((1, 2, 3), b),
        ((2, 0, 0), b),
        ((2, 1, 3), b),
        ((2, 2, 2), -a),
        ((2, 2, 4), b),
    ];
    let mut dense = vec![0.0; 45];
    for ((i, j, k), v) in expected {
        dense[(i * 3 + j) * 5 + k] = v;
    }
    assert!(max_abs_diff(&cg(1, 1, 2), &dense) < 1e-15);
}

#[test]
fn two_two_two_matches_closed_forms() {
    // Entries are s / sqrt70 with s in {+-2, +-sqrt3, 1}; signs from the same cross-check.
    let r3 = 3f64.sqrt();
    let expected: [((usize, usize, usize), f64); 25] = [
        ((0, 0, 2), -2.0),
        ((0, 1, 3), r3),
        ((0, 2, 0), -2.0),
        ((0, 3, 1), r3),
        ((1, 0, 3), r3),
        ((1, 1, 2), 1.0),
        ((1, 1, 4), -r3),
        ((1, 2, 1), 1.0),
        ((1, 3, 0), r3),
        ((1, 4, 1), -r3),
        ((2, 0, 0), -2.0),
        ((2, 1, 1), 1.0),
        ((2, 2, 2), 2.0),
        ((2, 3, 3), 1.0),
        ((2, 4, 4), -2.0),
        ((3, 0, 1), r3),
        ((3, 1, 0), r3),
        ((3, 2, 3), 1.0),
        ((3, 3, 2), 1.0),
        ((3, 3, 4), r3),
        ((3, 4, 3), r3),
        ((4, 1, 1), -r3),
        ((4, 2, 4), -2.0),
        ((4, 3, 3), r3),
        ((4, 4, 2), -2.0),
    ];
    let mut dense = vec![0.0; 125];
    for ((i, j, k), s) in expected {
        dense[(i * 5 + j) * 5 + k] = s / 70f64.sqrt();
    }
    assert!(max_abs_diff(&cg(2, 2, 2), &dense) < 1e-15);
}

#[test]
fn swapping_the_inputs_gives_the_sign_minus_one_to_l1_plus_l2_minus_l3() {
    for (l1, l2, l3) in all_triples() {
        let c = cg(l1, l2, l3);
        let swapped = cg(l2, l1, l3);
        let [n1, n2, n3] = cg_shape(l1, l2, l3);
        let sign = if (l1 + l2 - l3) % 2 == 0 { 1.0 } else { -1.0 };
        for i in 0..n1 {
            for j in 0..n2 {
                for k in 0..n3 {
                    let d = swapped[(j * n1 + i) * n3 + k] - sign * c[(i * n2 + j) * n3 + k];
                    assert!(d.abs() < 1e-15, "({l1}, {l2}, {l3}) at [{i}, {j}, {k}]");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (e) Structural zeros.
// ---------------------------------------------------------------------------------------

#[test]
fn nonzeros_counts_entries_above_the_tolerance() {
    assert_eq!(nonzeros(&[]), 0);
    assert_eq!(nonzeros(&[0.0, -0.0, 1e-13, -1e-12, 2e-12, -0.5, 1.0]), 3);
}

#[test]
fn sparse_tensors_have_the_expected_number_of_nonzeros() {
    assert_eq!(nonzeros(&cg(1, 1, 2)), 11, "of 45");
    assert_eq!(nonzeros(&cg(2, 2, 2)), 25, "of 125");
    assert_eq!(nonzeros(&cg(3, 3, 3)), 42, "of 343");
    // The flush makes every other entry an exact zero, so the count does not depend on
    // the tolerance.
    for (l1, l2, l3) in all_triples() {
        let c = cg(l1, l2, l3);
        assert_eq!(nonzeros(&c), c.iter().filter(|v| **v != 0.0).count(), "({l1}, {l2}, {l3})");
    }
}
