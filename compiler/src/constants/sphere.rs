//! Real spherical harmonics sampled on a Gauss-Legendre × uniform grid of the sphere, and
//! the quadrature-weighted back-projection: the constants of the spherical-grid (Gaunt)
//! tensor product. The basis, the grid and the exactness rules are documented on the
//! parent module, `crate::constants`.

use super::cg::MAX_DEGREE;
use std::f64::consts::PI;

/// The largest degree `L` of `sphere_grid(L, Q)` and `sphere_project(L, Q)`: the degrees
/// `cg` supports, so that every grid coefficient has a Clebsch-Gordan counterpart.
pub const MAX_GRID_DEGREE: u32 = MAX_DEGREE;

/// The largest quadrature order `Q`. `Q = 3 * MAX_GRID_DEGREE = 18` already makes the
/// product of two degree-6 signals exact; 32 leaves room for higher-order integrands
/// (three factors, a nonlinearity sampled on the grid) while keeping the grid at
/// 17 × 33 = 561 points.
pub const MAX_GRID_ORDER: u32 = 32;

/// Values that vanish in exact arithmetic (a sine at a multiple of pi, an odd Legendre
/// polynomial at the equator node) can come out at rounding level; at or below this
/// magnitude they are stored as exact `+0.0`, so the planner's count of nonzeros is the
/// true one. A true value that small moves by less than the rounding of the others.
pub(super) const FLUSH_TO_ZERO: f64 = 1e-14;

/// Why no grid constant exists for the requested degree and order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("spherical-harmonic degree L = {degree} is too large: the largest supported degree is {max}")]
    DegreeTooLarge { degree: u32, max: u32 },
    #[error("quadrature order Q = {order} is too large: the largest supported order is {max}")]
    OrderTooLarge { order: u32, max: u32 },
    #[error(
        "quadrature order Q = {order} is too small for degree L = {degree}: projecting back \
         inverts sampling only when Q >= 2L = {}",
        2 * degree
    )]
    OrderTooSmall { degree: u32, order: u32 },
}

/// The points and quadrature weights of the grid of order `Q`.
#[derive(Clone, Debug, PartialEq)]
pub struct SphereGrid {
    /// Unit vectors, `n_theta * n_phi` of them, index `t * n_phi + f` for the `t`-th
    /// polar angle (increasing from the north pole, `z = 1`) and longitude
    /// `phi = 2 pi f / n_phi`.
    pub points: Vec<[f64; 3]>,
    /// Positive weights summing to `4 pi`.
    pub weights: Vec<f64>,
}

/// The number of harmonics of degrees `0..=L`: `(L+1)^2`.
pub fn harmonics_count(degree: u32) -> usize {
    let n = degree as usize + 1;
    n * n
}

/// The number of polar angles and of longitudes of the grid of order `Q`:
/// `(floor(Q/2) + 1, Q + 1)`.
pub fn grid_dims(order: u32) -> (usize, usize) {
    (order as usize / 2 + 1, order as usize + 1)
}

/// The number of points of the grid of order `Q`.
pub fn grid_size(order: u32) -> usize {
    let (nt, np) = grid_dims(order);
    nt * np
}

/// The shape `[g, (L+1)^2]` of `sphere_grid(L, Q)` (`sphere_project` is its transpose).
/// It does not check the arguments.
pub fn sphere_grid_shape(degree: u32, order: u32) -> [usize; 2] {
    [grid_size(order), harmonics_count(degree)]
}

fn validate(degree: u32, order: u32) -> Result<(), GridError> {
    if degree > MAX_GRID_DEGREE {
        return Err(GridError::DegreeTooLarge { degree, max: MAX_GRID_DEGREE });
    }
    if order > MAX_GRID_ORDER {
        return Err(GridError::OrderTooLarge { order, max: MAX_GRID_ORDER });
    }
    if order < 2 * degree {
        return Err(GridError::OrderTooSmall { degree, order });
    }
    Ok(())
}

/// The Gauss-Legendre nodes and weights of `n` points on `[-1, 1]`, nodes decreasing.
/// Newton's method on the three-term recurrence of the Legendre polynomials, from the
/// classic initial guess `cos(pi (i + 3/4) / (n + 1/2))`; only the upper half is
/// iterated and the lower half mirrored, so the rule is exactly symmetric and an odd `n`
/// has the node `0` exactly.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    // P_n(x) and P_n'(x) by the recurrence (k+1) P_{k+1} = (2k+1) x P_k - k P_{k-1}.
    let legendre = |x: f64| {
        let (mut low, mut high) = (1.0, x);
        for k in 1..n {
            let next = ((2 * k + 1) as f64 * x * high - k as f64 * low) / (k + 1) as f64;
            low = high;
            high = next;
        }
        let (p, p_prev) = if n == 0 { (1.0, 0.0) } else { (high, low) };
        (p, n as f64 * (x * p - p_prev) / (x * x - 1.0))
    };
    for i in 0..n / 2 {
        let mut x = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        // Quadratic convergence: a handful of steps reach rounding level from this guess;
        // the cap only guards against a step that dithers in the last bit.
        for _ in 0..100 {
            let (p, dp) = legendre(x);
            let step = p / dp;
            x -= step;
            if step.abs() <= 1e-16 {
                break;
            }
        }
        let (_, dp) = legendre(x);
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        nodes[i] = x;
        nodes[n - 1 - i] = -x;
        weights[i] = w;
        weights[n - 1 - i] = w;
    }
    if n % 2 == 1 {
        let (_, dp) = legendre(0.0);
        nodes[n / 2] = 0.0;
        weights[n / 2] = 2.0 / (dp * dp);
    }
    (nodes, weights)
}

/// `(cos, sin)` of `2 pi f / n`, exact at the multiples of a quarter turn.
fn turn(f: usize, n: usize) -> (f64, f64) {
    if (4 * f).is_multiple_of(n) {
        return match 4 * f / n {
            0 => (1.0, 0.0),
            1 => (0.0, 1.0),
            2 => (-1.0, 0.0),
            _ => (0.0, -1.0),
        };
    }
    let a = 2.0 * PI * f as f64 / n as f64;
    (a.cos(), a.sin())
}

/// The grid of order `Q`: `floor(Q/2) + 1` Gauss-Legendre nodes in `cos theta` times
/// `Q + 1` uniform longitudes, which integrates every polynomial of degree `<= Q` on the
/// sphere exactly. Errors if `Q > MAX_GRID_ORDER`.
pub fn sphere_grid_points(order: u32) -> Result<SphereGrid, GridError> {
    if order > MAX_GRID_ORDER {
        return Err(GridError::OrderTooLarge { order, max: MAX_GRID_ORDER });
    }
    let (nt, np) = grid_dims(order);
    let (nodes, gl_weights) = gauss_legendre(nt);
    let mut points = Vec::with_capacity(nt * np);
    let mut weights = Vec::with_capacity(nt * np);
    for (&z, &w) in nodes.iter().zip(&gl_weights) {
        let s = (1.0 - z * z).sqrt();
        for f in 0..np {
            let (c, sn) = turn(f, np);
            points.push([s * c, s * sn, z]);
            weights.push(w * 2.0 * PI / np as f64);
        }
    }
    Ok(SphereGrid { points, weights })
}

/// The real spherical harmonics of degrees `0..=L` at the point `p`, degree-major, `(L+1)^2`
/// values: index `l*l + a` holds `Y_{l,m}` with `m = a - l`, the basis of `cg` (see
/// `crate::constants`). `p` is normalised first; the zero vector is taken as the north
/// pole `(0, 0, 1)`. Written in Cartesian form, `sin^m(theta) (cos, sin)(m phi)` as the
/// real and imaginary parts of `(x + i y)^m`, so it is exact at the poles too.
pub fn real_spherical_harmonics(degree: u32, p: [f64; 3]) -> Vec<f64> {
    let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
    let [x, y, z] = if r > 0.0 { p.map(|v| v / r) } else { [0.0, 0.0, 1.0] };
    let lmax = degree as usize;
    let mut out = vec![0.0; harmonics_count(degree)];
    // (c, s) = Re, Im of (x + i y)^m; pmm = (2m-1)!!, the polynomial part of P_m^m.
    let (mut c, mut s, mut pmm) = (1.0, 0.0, 1.0);
    for m in 0..=lmax {
        if m > 0 {
            (c, s) = (c * x - s * y, c * y + s * x);
            pmm *= (2 * m - 1) as f64;
        }
        // q runs over the polynomial part of P_l^m(z) for l = m, m+1, ..., without the
        // Condon-Shortley sign: P_l^m(z) = (1 - z^2)^(m/2) q_l(z).
        let (mut low, mut q) = (0.0, pmm);
        for l in m..=lmax {
            if l > m {
                let next = ((2 * l - 1) as f64 * z * q - (l + m - 1) as f64 * low) / (l - m) as f64;
                low = q;
                q = next;
            }
            // sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!), times sqrt 2 for m > 0.
            let ratio: f64 = ((l - m + 1)..=(l + m)).map(|k| 1.0 / k as f64).product();
            let norm = ((2 * l + 1) as f64 / (4.0 * PI) * ratio).sqrt();
            let base = l * l + l;
            if m == 0 {
                out[base] = norm * q;
            } else {
                let k = std::f64::consts::SQRT_2 * norm * q;
                out[base + m] = k * c;
                out[base - m] = k * s;
            }
        }
    }
    out
}

fn flush(v: f64) -> f64 {
    if v.abs() <= FLUSH_TO_ZERO {
        0.0
    } else {
        v
    }
}

/// `Y` of shape `[g, (L+1)^2]`, row-major: the real spherical harmonics of degrees `0..=L`
/// (as `real_spherical_harmonics`) at the points of the grid of order `Q`. Errors if
/// `L > MAX_GRID_DEGREE`, `Q > MAX_GRID_ORDER` or `Q < 2L`.
pub fn sphere_grid(degree: u32, order: u32) -> Result<Vec<f64>, GridError> {
    validate(degree, order)?;
    let grid = sphere_grid_points(order)?;
    Ok(grid.points.iter().flat_map(|&p| real_spherical_harmonics(degree, p)).map(flush).collect())
}

/// `Yi` of shape `[(L+1)^2, g]`, row-major: `Yi[a, p] = w_p Y[p, a]`, the transpose of
/// `sphere_grid(L, Q)` scaled by the quadrature weights, so that `Yi Y` is the identity
/// (`Q >= 2L`); its zeros are exactly those of `Y`. Errors as `sphere_grid`.
pub fn sphere_project(degree: u32, order: u32) -> Result<Vec<f64>, GridError> {
    validate(degree, order)?;
    let grid = sphere_grid_points(order)?;
    let n = harmonics_count(degree);
    let g = grid.points.len();
    let mut out = vec![0.0; n * g];
    for (p, (&point, &w)) in grid.points.iter().zip(&grid.weights).enumerate() {
        for (a, v) in real_spherical_harmonics(degree, point).into_iter().enumerate() {
            out[a * g + p] = w * flush(v);
        }
    }
    Ok(out)
}
