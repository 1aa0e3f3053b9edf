//! Tests of the spherical-grid constants: the quadrature (exact to its order and no
//! further), the harmonics against the textbook definition the Clebsch-Gordan tests use,
//! orthonormality, the Gaunt relation with `cg` (the same basis, component for component),
//! and equivariance of the grid product under random rotations.

use super::sphere::{grid_dims, FLUSH_TO_ZERO};
use super::tests::{max_abs_diff, real_sh, rotate, wigner_d, Rng};
use super::*;
use std::f64::consts::PI;

/// `(n - 1)!!` for even `n`, the moments of the sphere: `(n-1)(n-3)...1`, 1 for `n = 0`.
fn odd_double_factorial_below(n: u32) -> f64 {
    (1..n).rev().step_by(2).map(|k| k as f64).product()
}

/// `int x^a y^b z^c` over the unit sphere: zero unless all exponents are even, else
/// `4 pi (a-1)!! (b-1)!! (c-1)!! / (a+b+c+1)!!`.
fn sphere_moment(a: u32, b: u32, c: u32) -> f64 {
    if a % 2 == 1 || b % 2 == 1 || c % 2 == 1 {
        return 0.0;
    }
    let num = odd_double_factorial_below(a) * odd_double_factorial_below(b) * odd_double_factorial_below(c);
    let den: f64 = (1..=a + b + c + 1).rev().step_by(2).map(|k| k as f64).product();
    4.0 * PI * num / den
}

fn quadrature(grid: &SphereGrid, f: impl Fn([f64; 3]) -> f64) -> f64 {
    grid.points.iter().zip(&grid.weights).map(|(&p, &w)| w * f(p)).sum()
}

/// `Y` as rows of `(L+1)^2` values, and `Yi` as its `(L+1)^2` rows of `g` values.
fn matrices(l: u32, q: u32) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let n = harmonics_count(l);
    let g = grid_size(q);
    let y = sphere_grid(l, q).expect("valid arguments");
    let yi = sphere_project(l, q).expect("valid arguments");
    assert_eq!(y.len(), g * n);
    assert_eq!(yi.len(), n * g);
    (y.chunks(n).map(<[f64]>::to_vec).collect(), yi.chunks(g).map(<[f64]>::to_vec).collect())
}

/// The grid product `out[k] = sum_p Yi[k, p] (Y x)[p] (Y y)[p]`, in plain f64.
fn grid_product(yi: &[Vec<f64>], y: &[Vec<f64>], x: &[f64], v: &[f64]) -> Vec<f64> {
    let on_grid: Vec<f64> = y
        .iter()
        .map(|row| {
            row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() * row.iter().zip(v).map(|(a, b)| a * b).sum::<f64>()
        })
        .collect();
    yi.iter().map(|row| row.iter().zip(&on_grid).map(|(a, b)| a * b).sum()).collect()
}

/// The Wigner matrix of degrees `0..=L` in the coefficient basis, block-diagonal, from
/// the quadrature: `D[a, b] = sum_p w_p Y_a(R p_p) Y_b(p_p)` (exact, as the integrand has
/// degree `2L` and the grid order is `2L`).
fn block_wigner(l: u32, r: &[[f64; 3]; 3]) -> Vec<Vec<f64>> {
    let n = harmonics_count(l);
    let grid = sphere_grid_points(2 * l).expect("a valid order");
    let mut d = vec![vec![0.0; n]; n];
    for (&p, &w) in grid.points.iter().zip(&grid.weights) {
        let rotated = real_spherical_harmonics(l, rotate(r, p));
        let here = real_spherical_harmonics(l, p);
        for a in 0..n {
            for b in 0..n {
                d[a][b] += w * rotated[a] * here[b];
            }
        }
    }
    d
}

/// The degree of coefficient `i`: the `l` with `l*l <= i < (l+1)^2`.
fn degree_of(i: usize) -> usize {
    (0..).find(|l| (l + 1) * (l + 1) > i).expect("some degree")
}

fn apply(d: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    d.iter().map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

// ---------------------------------------------------------------------------------------
// The quadrature.
// ---------------------------------------------------------------------------------------

#[test]
fn gauss_legendre_matches_known_rules_and_is_exact_to_degree_2n_minus_1() {
    let (x, w) = gauss_legendre(4);
    let expected_x =
        [0.861_136_311_594_052_6, 0.339_981_043_584_856_3, -0.339_981_043_584_856_3, -0.861_136_311_594_052_6];
    let expected_w =
        [0.347_854_845_137_453_9, 0.652_145_154_862_546_1, 0.652_145_154_862_546_1, 0.347_854_845_137_453_9];
    assert!(max_abs_diff(&x, &expected_x) < 1e-15, "{x:?}");
    assert!(max_abs_diff(&w, &expected_w) < 1e-15, "{w:?}");
    assert_eq!(gauss_legendre(1), (vec![0.0], vec![2.0]));
    for n in 1..=17 {
        let (x, w) = gauss_legendre(n);
        assert!(x.windows(2).all(|p| p[0] > p[1]), "n = {n}: nodes not decreasing");
        assert!(w.iter().all(|&v| v > 0.0));
        for k in 0..2 * n {
            let exact = if k % 2 == 1 { 0.0 } else { 2.0 / (k + 1) as f64 };
            let got: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(k as i32)).sum();
            assert!((got - exact).abs() < 1e-14, "n = {n}, x^{k}: {got} vs {exact}");
        }
        // x^(2n) is the first monomial the rule misses, by the textbook error term
        // 2^(2n+1) (n!)^4 / ((2n+1) ((2n)!)^2).
        let got: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(2 * n as i32)).sum();
        let fact = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        let error_term = 2f64.powi(2 * n as i32 + 1) * fact(n).powi(4) / ((2 * n + 1) as f64 * fact(2 * n).powi(2));
        let missed = 2.0 / (2 * n + 1) as f64 - got;
        assert!((missed - error_term).abs() < 1e-3 * error_term, "n = {n}: missed {missed}, expected {error_term}");
    }
}

#[test]
fn the_grid_integrates_every_monomial_up_to_its_order() {
    for q in 0..=MAX_GRID_ORDER {
        let grid = sphere_grid_points(q).expect("a valid order");
        let (nt, np) = grid_dims(q);
        assert_eq!(grid.points.len(), nt * np);
        assert_eq!(grid.points.len(), grid_size(q));
        let total: f64 = grid.weights.iter().sum();
        assert!((total - 4.0 * PI).abs() < 1e-13, "Q = {q}: weights sum to {total}");
        for p in &grid.points {
            let r2 = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
            assert!((r2 - 1.0).abs() < 1e-15);
        }
        for a in 0..=q {
            for b in 0..=q - a {
                for c in 0..=q - a - b {
                    let got = quadrature(&grid, |p| p[0].powi(a as i32) * p[1].powi(b as i32) * p[2].powi(c as i32));
                    let exact = sphere_moment(a, b, c);
                    assert!((got - exact).abs() < 1e-13, "Q = {q}: x^{a} y^{b} z^{c}: {got} vs {exact}");
                }
            }
        }
        // The grid is the smallest of its kind: Re (x + iy)^(Q+1), of degree Q + 1,
        // integrates to zero but aliases onto the constant on Q + 1 longitudes.
        let got = quadrature(&grid, |p| {
            let (mut c, mut s) = (1.0, 0.0);
            for _ in 0..=q {
                (c, s) = (c * p[0] - s * p[1], c * p[1] + s * p[0]);
            }
            c
        });
        assert!(got.abs() > 1e-3, "Q = {q}: a degree-{} polynomial integrated exactly", q + 1);
    }
}

#[test]
fn points_run_from_the_north_pole_down_and_around() {
    let grid = sphere_grid_points(4).expect("a valid order");
    let (nt, np) = grid_dims(4);
    assert_eq!((nt, np), (3, 5));
    let z: Vec<f64> = (0..nt).map(|t| grid.points[t * np][2]).collect();
    assert!(z[0] > z[1] && z[1] > z[2] && z[1] == 0.0, "{z:?}");
    for t in 0..nt {
        assert_eq!(grid.points[t * np][1], 0.0, "longitude 0 has y = 0 exactly");
        for f in 0..np {
            let p = grid.points[t * np + f];
            let phi = p[1].atan2(p[0]).rem_euclid(2.0 * PI);
            assert!((phi - 2.0 * PI * f as f64 / np as f64).abs() < 1e-14);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The harmonics, their errors and values.
// ---------------------------------------------------------------------------------------

#[test]
fn harmonics_match_the_textbook_definition_of_the_cg_basis() {
    let mut rng = Rng(21);
    let mut points: Vec<[f64; 3]> = (0..50).map(|_| rng.unit_vector()).collect();
    points.extend([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]);
    for p in points {
        let all = real_spherical_harmonics(MAX_GRID_DEGREE, p);
        for l in 0..=MAX_GRID_DEGREE {
            let start = (l * l) as usize;
            let expected = real_sh(l, p);
            let got = &all[start..start + expected.len()];
            assert!(max_abs_diff(got, &expected) < 1e-13, "l = {l} at {p:?}: {got:?} vs {expected:?}");
        }
    }
    // Degree 1 is sqrt(3 / 4pi) (y, z, x), as `cg` documents; points are normalised first.
    let k = (3.0 / (4.0 * PI)).sqrt();
    let y = real_spherical_harmonics(1, [0.6, 0.0, 0.8].map(|v| v * 5.0));
    assert!(max_abs_diff(&y, &[0.5 / PI.sqrt(), 0.0, 0.8 * k, 0.6 * k]) < 1e-15, "{y:?}");
    let y = real_spherical_harmonics(1, [0.0; 3]);
    assert!(max_abs_diff(&y, &[0.5 / PI.sqrt(), 0.0, k, 0.0]) < 1e-15, "the zero vector is the north pole");
}

#[test]
fn shapes_and_errors() {
    assert_eq!(sphere_grid_shape(2, 6), [4 * 7, 9]);
    assert_eq!(sphere_grid_shape(3, 9), [5 * 10, 16]);
    assert_eq!(sphere_grid(2, 6).unwrap().len(), 28 * 9);
    assert_eq!(grid_size(MAX_GRID_ORDER), 17 * 33);
    let big = MAX_GRID_DEGREE + 1;
    assert_eq!(sphere_grid(big, 20), Err(GridError::DegreeTooLarge { degree: big, max: MAX_GRID_DEGREE }));
    assert_eq!(sphere_project(1, 33), Err(GridError::OrderTooLarge { order: 33, max: MAX_GRID_ORDER }));
    assert_eq!(sphere_grid(3, 5), Err(GridError::OrderTooSmall { degree: 3, order: 5 }));
    assert!(sphere_grid(u32::MAX, u32::MAX).is_err());
    assert!(sphere_grid_points(u32::MAX).is_err());
    assert_eq!(
        sphere_project(3, 5).unwrap_err().to_string(),
        "quadrature order Q = 5 is too small for degree L = 3: projecting back inverts sampling only when Q >= 2L = 6"
    );
    // The boundaries are valid.
    assert!(sphere_grid(3, 6).is_ok());
    assert!(sphere_grid(0, 0).is_ok());
    assert!(sphere_project(MAX_GRID_DEGREE, MAX_GRID_ORDER).is_ok());
}

#[test]
fn zeros_are_exact_positive_and_shared_by_both_constants() {
    for (l, q) in [(2, 6), (3, 9), (6, 18), (1, 2)] {
        let (y, yi) = matrices(l, q);
        let (g, n) = (y.len(), y[0].len());
        let mut zeros = 0;
        for p in 0..g {
            for a in 0..n {
                assert!(y[p][a].is_finite() && yi[a][p].is_finite());
                assert_eq!(y[p][a] == 0.0, yi[a][p] == 0.0, "({l}, {q}) at [{p}, {a}]");
                if y[p][a] == 0.0 {
                    assert!(y[p][a].is_sign_positive() && yi[a][p].is_sign_positive());
                    zeros += 1;
                }
            }
        }
        // Every sine harmonic (m < 0) vanishes exactly at longitude 0.
        let (nt, _) = grid_dims(q);
        let sines = (l * (l + 1) / 2) as usize;
        assert!(zeros >= nt * sines, "({l}, {q}): only {zeros} exact zeros");
        // Nothing is left at rounding level.
        assert!(y.iter().flatten().all(|v| *v == 0.0 || v.abs() > FLUSH_TO_ZERO));
    }
}

// ---------------------------------------------------------------------------------------
// Orthonormality and the Gaunt relation with `cg`.
// ---------------------------------------------------------------------------------------

#[test]
fn projecting_back_inverts_sampling_for_every_valid_order() {
    for l in 0..=MAX_GRID_DEGREE {
        for q in 2 * l..=MAX_GRID_ORDER {
            let (y, yi) = matrices(l, q);
            let n = harmonics_count(l);
            for (a, back) in yi.iter().enumerate() {
                for b in 0..n {
                    let got: f64 = back.iter().zip(&y).map(|(w, row)| w * row[b]).sum();
                    let expected = if a == b { 1.0 } else { 0.0 };
                    assert!((got - expected).abs() < 1e-13, "(L, Q) = ({l}, {q}) at [{a}, {b}]: {got}");
                }
            }
        }
    }
}

#[test]
fn below_order_2l_sampling_loses_information() {
    // The check that `validate` enforces: on the grid of order 2L - 1 the Gram matrix of
    // degree L is not the identity. (Computed here from the points, as the constants refuse.)
    for l in 1..=MAX_GRID_DEGREE {
        let grid = sphere_grid_points(2 * l - 1).expect("a valid order");
        let n = harmonics_count(l);
        let mut worst: f64 = 0.0;
        for a in 0..n {
            for b in 0..n {
                let got = quadrature(&grid, |p| {
                    let y = real_spherical_harmonics(l, p);
                    y[a] * y[b]
                });
                worst = worst.max((got - if a == b { 1.0 } else { 0.0 }).abs());
            }
        }
        assert!(worst > 1e-3, "L = {l}: the grid of order {} is already exact", 2 * l - 1);
    }
}

#[test]
fn the_grid_gaunt_tensor_is_a_positive_multiple_of_cg_for_every_path() {
    // G[a, b, c] = sum_p Yi[c, p] Y[p, a] Y[p, b] on a grid exact for degree 3 * 6.
    let (l_max, q) = (MAX_GRID_DEGREE, 3 * MAX_GRID_DEGREE);
    let (y, yi) = matrices(l_max, q);
    let g = y.len();
    for l1 in 0..=l_max {
        for l2 in 0..=l_max {
            for l3 in 0..=l_max {
                let [n1, n2, n3] = cg_shape(l1, l2, l3);
                let (o1, o2, o3) = ((l1 * l1) as usize, (l2 * l2) as usize, (l3 * l3) as usize);
                let mut gaunt = vec![0.0; n1 * n2 * n3];
                for a in 0..n1 {
                    for b in 0..n2 {
                        for c in 0..n3 {
                            gaunt[(a * n2 + b) * n3 + c] =
                                (0..g).map(|p| yi[o3 + c][p] * y[p][o1 + a] * y[p][o2 + b]).sum();
                        }
                    }
                }
                let largest = gaunt.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let triangle = l3 >= l1.abs_diff(l2) && l3 <= l1 + l2;
                if !triangle || (l1 + l2 + l3) % 2 == 1 {
                    assert!(largest < 1e-13, "({l1}, {l2}, {l3}) should vanish: {largest}");
                    continue;
                }
                let c = clebsch_gordan(l1, l2, l3).expect("a valid triple");
                // cg has unit norm, so the best scalar is the inner product.
                let k: f64 = gaunt.iter().zip(&c).map(|(a, b)| a * b).sum();
                let residual = gaunt.iter().zip(&c).map(|(a, b)| (a - k * b).abs()).fold(0.0, f64::max);
                assert!(residual < 1e-13, "({l1}, {l2}, {l3}): not proportional to cg, residual {residual}");
                let su2 = super::cg::su2_coefficient(l1, 0, l2, 0, l3);
                let expected = ((2 * l1 + 1) as f64 * (2 * l2 + 1) as f64 / (4.0 * PI)).sqrt() * su2.abs();
                assert!((k - expected).abs() < 1e-13, "({l1}, {l2}, {l3}): k = {k}, expected +{expected}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Equivariance.
// ---------------------------------------------------------------------------------------

#[test]
fn quadrature_wigner_matrices_agree_with_the_measured_ones() {
    let mut rng = Rng(31);
    for _ in 0..3 {
        let r = rng.rotation();
        let d = block_wigner(MAX_GRID_DEGREE, &r);
        for l in 0..=MAX_GRID_DEGREE {
            let n = 2 * l as usize + 1;
            let o = (l * l) as usize;
            let measured = wigner_d(l, &r, &mut rng);
            let block: Vec<f64> = (0..n * n).map(|k| d[o + k / n][o + k % n]).collect();
            assert!(max_abs_diff(&block, &measured) < 1e-10, "l = {l}");
        }
        // Nothing couples different degrees.
        for (a, row) in d.iter().enumerate() {
            for (b, v) in row.iter().enumerate() {
                if degree_of(a) != degree_of(b) {
                    assert!(v.abs() < 1e-13);
                }
            }
        }
    }
}

#[test]
fn the_grid_product_is_equivariant_exactly_when_the_order_reaches_3l() {
    let mut rng = Rng(41);
    for l in 1..=MAX_GRID_DEGREE {
        let n = harmonics_count(l);
        let x: Vec<f64> = (0..n).map(|_| rng.symmetric()).collect();
        let v: Vec<f64> = (0..n).map(|_| rng.symmetric()).collect();
        let r = rng.rotation();
        let d = block_wigner(l, &r);
        let error = |q: u32| {
            let (y, yi) = matrices(l, q);
            let rotated_first = grid_product(&yi, &y, &apply(&d, &x), &apply(&d, &v));
            let rotated_after = apply(&d, &grid_product(&yi, &y, &x, &v));
            max_abs_diff(&rotated_first, &rotated_after)
        };
        assert!(error(3 * l) < 1e-12, "L = {l}, Q = 3L: {}", error(3 * l));
        assert!(error(MAX_GRID_ORDER.max(3 * l)) < 1e-12);
        // One order below, the rotated inputs alias: the product is no longer equivariant.
        assert!(error(3 * l - 1) > 1e-6, "L = {l}, Q = 3L - 1: {}", error(3 * l - 1));
    }
}
