//! Constant tensors that programs use but never compute at run time: the real-basis
//! Clebsch-Gordan tensor of e3nn-style equivariant tensor products,
//! `out[z,w,k] = W[u,v,w] C[i,j,k] x[z,u,i] y[z,v,j]`, which the planner treats as a
//! constant because it is known at compile time and mostly zeros; and the sampled
//! spherical harmonics and quadrature of the spherical-grid product (see "Spherical grid"
//! below).
//!
//! # Convention
//!
//! `clebsch_gordan(l1, l2, l3)` returns `C` of shape `[2l1+1, 2l2+1, 2l3+1]`, row-major
//! (index `[a, b, c]` at `(a * (2l2+1) + b) * (2l3+1) + c`). It is entry for entry the
//! tensor of e3nn's `o3.wigner_3j(l1, l2, l3)` (the Racah-based construction of
//! `e3nn/o3/_wigner.py`), built as follows.
//!
//! 1. **Complex basis.** States `|l, m>` with `m = -l..l`, Condon-Shortley phases, and the
//!    standard Clebsch-Gordan coefficients `<l1 m1; l2 m2 | l3 m3>` (real, zero unless
//!    `m3 = m1 + m2`, and `<l1 l1; l2 (l3-l1) | l3 l3> > 0`). They are computed exactly
//!    from the binomial form of Racah's formula (an integer sum) times the square root of
//!    a ratio of factorials.
//! 2. **Real basis.** Index `a = 0..2l` stands for the real spherical harmonic `Y_{l,m}`
//!    with `m = a - l`: `m < 0` goes with `sin(|m| phi)`, `m = 0` with the Legendre
//!    polynomial, `m > 0` with `cos(m phi)`, and the real functions carry no
//!    Condon-Shortley sign. They are orthonormal on the sphere and relate to the complex
//!    harmonics `Y_l^m` (which do carry it) by the standard unitary change of basis
//!    `Y_l^{-|m|} = (Y_{l,|m|} - i Y_{l,-|m|}) / sqrt2`, `Y_l^0 = Y_{l,0}`,
//!    `Y_l^{|m|} = (-1)^m (Y_{l,|m|} + i Y_{l,-|m|}) / sqrt2`. Call this matrix `U_l`
//!    (rows: complex `m`, columns: real `a`).
//! 3. **Phase.** As in e3nn, the change of basis actually used is `Q_l = (-i)^l U_l`, and
//!    `C[a,b,c] = N * sum Q_l1[m1,a] Q_l2[m2,b] conj(Q_l3[m3,c]) <l1 m1; l2 m2 | l3 m3>`.
//!    This is `(-i)^(l1+l2-l3)` times the coupling tensor in the plain basis `U`, which is
//!    real when `l1+l2+l3` is even and purely imaginary when it is odd; the factor makes
//!    every `C` real (for example `(1,1,1)` becomes the Levi-Civita symbol, not `i` times
//!    it). Entries that vanish in exact arithmetic are stored as exact `+0.0`.
//! 4. **Normalisation.** `N > 0` makes `C` unit Frobenius norm, `sum C[a,b,c]^2 = 1`, as
//!    e3nn's `wigner_3j`. Hence `sum_{a,b} C[a,b,c] C[a,b,c'] = delta(c,c') / (2l3+1)`, and
//!    `|C|` is the textbook coefficient divided by `sqrt(2l3+1)`.
//! 5. **Sign.** No sign is flipped after the fact: the overall sign is the one the formula
//!    gives (Condon-Shortley coefficients, then the phase of step 3), which is e3nn's.
//!    This is deterministic but it is *not* "first nonzero entry positive": the first
//!    nonzero entry of `(1,1,2)` is `-1/sqrt30`. Known values: `(l,l,0)`, `(0,l,l)` and
//!    `(l,0,l)` are `+identity / sqrt(2l+1)`, and `(1,1,1)[a,b,c] = +epsilon[a,b,c] / sqrt6`.
//!
//! # Axes
//!
//! The real harmonics above are defined with the polar (quantisation) axis `z`, so the
//! three components of degree 1 are proportional to `(y, z, x)`, in that order. e3nn
//! calls the same three components `(x, y, z)`, with `y` as the polar axis. The two
//! namings differ by a cyclic relabelling of the axes, which is a proper rotation, so `C`
//! is the same tensor either way; only the meaning of a Cartesian input differs. A
//! Cartesian vector `(x, y, z)` is a degree-1 feature as it stands in e3nn's naming, and
//! is `(y, z, x)` in the `z`-polar naming.
//!
//! # Equivariance
//!
//! Let `D_l(R)` be the real Wigner matrix of a rotation `R` in this basis, defined by
//! `Y_l(R p) = D_l(R) Y_l(p)` for every point `p`. Then, for every rotation,
//! `sum_{a',b'} D_l1[a,a'] D_l2[b,b'] C[a',b',c'] = sum_c C[a,b,c] D_l3[c,c']`: if `x`
//! and `y` turn into `D_l1 x` and `D_l2 y`, then `out[c] = sum C[a,b,c] x[a] y[b]` turns
//! into `D_l3 out`.

//!
//! # Spherical grid
//!
//! `sphere_grid(L, Q)` and `sphere_project(L, Q)` are the two constants of the
//! spherical-grid (Gaunt) tensor product (Luo et al., 2024; the grid approach compared in
//! Xie et al., "The Price of Freedom", 2025): sample both inputs on a grid, multiply
//! pointwise, project back.
//!
//! - **Coefficients.** A signal of degrees `0..=L` has `(L+1)^2` coefficients,
//!   degree-major: index `l*l + a`, `a = 0..2l`, is the real harmonic `Y_{l,m}`, `m = a - l`,
//!   of the basis above (orthonormal on the sphere, polar axis `z`, no Condon-Shortley
//!   sign), so the block of degree `l` is a feature in the component order and signs of
//!   `cg`. `real_spherical_harmonics(L, p)` evaluates them at any point. They are the
//!   textbook ("Wikipedia table") real harmonics, which e3nn's documentation states its
//!   `o3.spherical_harmonics(l, v, normalize=True, normalization='integral')` equals when
//!   called with `v = (y, z, x)`: the axis relabelling of "Axes" above.
//! - **Grid of order `Q`.** `n_theta = floor(Q/2) + 1` Gauss-Legendre nodes in
//!   `cos theta`, from the north pole down, times `n_phi = Q + 1` longitudes
//!   `phi = 2 pi f / n_phi`; point `p = t * n_phi + f`, `g = n_theta * n_phi` points. The
//!   weight of a point is its Gauss-Legendre weight times `2 pi / n_phi` (they sum to
//!   `4 pi`). The rule integrates every polynomial of degree `<= Q` on the sphere exactly:
//!   the longitudes every frequency `|m| <= Q < n_phi`, the nodes the remaining polynomial
//!   in `cos theta` of degree `<= Q <= 2 n_theta - 1`. Both counts are the least that do.
//! - **`Y = sphere_grid(L, Q)`**, shape `[g, (L+1)^2]`: `Y[p, i]` is harmonic `i` at point
//!   `p`. **`Yi = sphere_project(L, Q)`**, shape `[(L+1)^2, g]`: `Yi[i, p] = w_p Y[p, i]`.
//!   Entries that vanish in exact arithmetic are exact `+0.0`.
//! - **Exactness.** `sum_p Yi[i, p] Y[p, j] = delta_ij` (the integrand has degree `2L`),
//!   which is why `Q >= 2L` is required: with less, projecting back would not even invert
//!   sampling. The grid product `out[k] = sum_p Yi[k,p] (Y x)[p] (Y y)[p]` with
//!   `Yi = sphere_project(L_out, Q)` and `Y = sphere_grid(L_in, Q)` (`g` depends on `Q`
//!   only, so the two degrees may differ) integrates a polynomial of degree
//!   `2 L_in + L_out`; with `Q >= 2 L_in + L_out` (`3L` for equal degrees) it is exact and
//!   equals the Gaunt coupling `out[c] = sum G[a,b,c] x[a] y[b]`, `G[a,b,c] = int Y_a Y_b Y_c`,
//!   which for degrees `(l1, l2, l3)` is `k(l1,l2,l3) cg(l1,l2,l3)`: one scalar per path,
//!   positive, `k = sqrt((2l1+1)(2l2+1)/(4 pi)) |<l1 0; l2 0 | l3 0>|`, and zero when
//!   `l1 + l2 + l3` is odd (as `G` is then, by parity). So the product is equivariant, `out(D x, D y) = D out(x, y)` with `D`
//!   block-diagonal over degrees, exactly when `Q` is large enough, and only
//!   approximately below.
//! - **Limits.** `L <= MAX_GRID_DEGREE` (6, as `cg`), `2L <= Q <= MAX_GRID_ORDER` (32, at
//!   most 561 points).

pub mod cg;
pub mod sphere;

pub use cg::{cg_shape, clebsch_gordan, nonzeros, CgError, MAX_DEGREE, NONZERO_TOLERANCE};
pub use sphere::{
    gauss_legendre, grid_dims, grid_size, harmonics_count, real_spherical_harmonics, sphere_grid, sphere_grid_points,
    sphere_grid_shape, sphere_project, GridError, SphereGrid, MAX_GRID_DEGREE, MAX_GRID_ORDER,
};

#[cfg(test)]
mod sphere_tests;
#[cfg(test)]
mod tests;
