//! Constant tensors that programs use but never compute at run time. Today this is the
//! real-basis Clebsch-Gordan tensor of e3nn-style equivariant tensor products,
//! `out[z,w,k] = W[u,v,w] C[i,j,k] x[z,u,i] y[z,v,j]`. The planner treats `C` as a
//! constant because it is known at compile time and mostly zeros.
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

pub mod cg;

pub use cg::{cg_shape, clebsch_gordan, nonzeros, CgError, MAX_DEGREE, NONZERO_TOLERANCE};

#[cfg(test)]
mod tests;
