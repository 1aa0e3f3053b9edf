//! GEMM against a naive reference, for f32 and f64, over the layouts the compiler emits.

use proptest::prelude::*;
use tessera_runtime::gemm::{gemm, GemmDesc, GemmLoop};
use tessera_runtime::{gemm_slices, with_threads, GemmScalar};

/// A GEMM with its outer loops.
#[derive(Clone, Debug)]
struct Case {
    desc: GemmDesc,
    outer: Vec<GemmLoop>,
}

impl Case {
    fn new(desc: GemmDesc) -> Case {
        Case {
            desc,
            outer: vec![],
        }
    }

    fn with_loop(mut self, extent: usize, sa: isize, sb: isize, sc: isize) -> Case {
        self.outer.push(GemmLoop {
            extent,
            stride_a: sa,
            stride_b: sb,
            stride_c: sc,
        });
        self
    }

    /// (extent, stride) of every dimension of one operand: 0 = A, 1 = B, 2 = C.
    fn dims(&self, which: usize) -> Vec<(usize, isize)> {
        let d = &self.desc;
        let mut dims = match which {
            0 => vec![(d.m, d.a_rs), (d.k, d.a_cs)],
            1 => vec![(d.k, d.b_rs), (d.n, d.b_cs)],
            _ => vec![(d.m, d.c_rs), (d.n, d.c_cs)],
        };
        for l in &self.outer {
            dims.push((l.extent, [l.stride_a, l.stride_b, l.stride_c][which]));
        }
        dims
    }
}

/// Length and origin of the smallest array that holds every offset of `dims`.
fn extent_of(dims: &[(usize, isize)]) -> (usize, usize) {
    let (mut lo, mut hi) = (0isize, 0isize);
    for &(e, s) in dims {
        let span = e.saturating_sub(1) as isize * s;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    ((hi - lo + 1) as usize, (-lo) as usize)
}

/// Deterministic values in [-1, 1] with few significant bits, so f32 products are exact-ish.
fn fill(len: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) % 257) as f64 / 128.0 - 1.0
        })
        .collect()
}

/// All outer multi-indices in order, outermost loop first.
fn outer_indices(outer: &[GemmLoop]) -> Vec<Vec<usize>> {
    let mut all = vec![vec![]];
    for l in outer {
        all = all
            .into_iter()
            .flat_map(|p| {
                (0..l.extent).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    all
}

/// The reference: walks every outer iteration in order; the first write to a C element
/// overwrites it unless accumulating. Returns (values, magnitudes, touched).
fn reference(
    case: &Case,
    a: &[f64],
    b: &[f64],
    c: &[f64],
    origins: [usize; 3],
) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let d = &case.desc;
    let mut out = c.to_vec();
    let mut mag = vec![0.0; c.len()];
    let mut touched = vec![false; c.len()];
    let at = |origin: usize, off: isize| (origin as isize + off) as usize;
    for idx in outer_indices(&case.outer) {
        let mut off = [0isize; 3];
        for (l, &i) in case.outer.iter().zip(&idx) {
            off[0] += i as isize * l.stride_a;
            off[1] += i as isize * l.stride_b;
            off[2] += i as isize * l.stride_c;
        }
        for i in 0..d.m {
            for j in 0..d.n {
                let (mut sum, mut abs) = (0.0, 0.0);
                for p in 0..d.k {
                    let x = a[at(
                        origins[0],
                        off[0] + i as isize * d.a_rs + p as isize * d.a_cs,
                    )];
                    let y = b[at(
                        origins[1],
                        off[1] + p as isize * d.b_rs + j as isize * d.b_cs,
                    )];
                    sum += x * y;
                    abs += (x * y).abs();
                }
                let ci = at(
                    origins[2],
                    off[2] + i as isize * d.c_rs + j as isize * d.c_cs,
                );
                if !touched[ci] {
                    touched[ci] = true;
                    if d.accumulate {
                        mag[ci] = out[ci].abs();
                    } else {
                        out[ci] = 0.0;
                    }
                }
                out[ci] += d.alpha * sum;
                mag[ci] += d.alpha.abs() * abs;
            }
        }
    }
    (out, mag, touched)
}

/// Runs `case` in T with the given initial C value (None: random) and compares with the
/// reference; untouched C elements must keep their bits.
fn check<T: GemmScalar>(case: &Case, threads: usize, c_init: Option<f64>) -> Result<(), String> {
    let (la, oa) = extent_of(&case.dims(0));
    let (lb, ob) = extent_of(&case.dims(1));
    let (lc, oc) = extent_of(&case.dims(2));
    let round =
        |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| T::from_f64(x).to_f64()).collect() };
    let a = round(fill(la, 1));
    let b = round(fill(lb, 2));
    let c0 = match c_init {
        Some(v) => vec![v; lc],
        None => round(fill(lc, 3)),
    };
    let at: Vec<T> = a.iter().map(|&x| T::from_f64(x)).collect();
    let bt: Vec<T> = b.iter().map(|&x| T::from_f64(x)).collect();
    let mut ct: Vec<T> = c0.iter().map(|&x| T::from_f64(x)).collect();
    gemm_slices(
        &case.desc,
        &case.outer,
        (&at, oa),
        (&bt, ob),
        (&mut ct, oc),
        threads,
    )
    .map_err(|e| format!("refused: {e}"))?;
    let (want, mag, touched) = reference(case, &a, &b, &c0, [oa, ob, oc]);
    let eps = if T::DTYPE == tessera_runtime::DType::F32 {
        f32::EPSILON as f64
    } else {
        f64::EPSILON
    };
    let red: usize = case
        .outer
        .iter()
        .filter(|l| l.stride_c == 0)
        .map(|l| l.extent)
        .product();
    let terms = (case.desc.k * red + 2) as f64;
    for i in 0..lc {
        let got = ct[i].to_f64();
        if !touched[i] {
            if got.to_bits() != T::from_f64(c0[i]).to_f64().to_bits() {
                return Err(format!("untouched C[{i}] changed: {} -> {got}", c0[i]));
            }
            continue;
        }
        let tol = 4.0 * eps * terms * mag[i] + 1e-300;
        // Written so that a NaN result fails too.
        let close = (got - want[i]).abs() <= tol;
        if !close {
            return Err(format!(
                "C[{i}] = {got}, want {} (tol {tol:e}) in {case:?}",
                want[i]
            ));
        }
    }
    Ok(())
}

fn check_both(case: &Case, threads: usize) {
    check::<f32>(case, threads, None).unwrap();
    check::<f64>(case, threads, None).unwrap();
}

fn rm(m: usize, n: usize, k: usize) -> GemmDesc {
    GemmDesc::row_major(m, n, k)
}

#[test]
fn plain_row_major() {
    for (m, n, k) in [
        (1, 1, 1),
        (2, 3, 4),
        (7, 5, 3),
        (16, 16, 16),
        (33, 17, 65),
        (64, 80, 96),
    ] {
        for threads in [1, 2] {
            check_both(&Case::new(rm(m, n, k)), threads);
        }
    }
}

#[test]
fn large_256_cubed() {
    check_both(&Case::new(rm(256, 256, 256)), 2);
    check::<f32>(&Case::new(rm(256, 256, 256)), 1, None).unwrap();
}

#[test]
fn transposed_operands() {
    for (m, n, k) in [(5, 7, 9), (40, 33, 70)] {
        let mut d = rm(m, n, k);
        // A stored k-major (A^T row-major).
        (d.a_rs, d.a_cs) = (1, m as isize);
        check_both(&Case::new(d), 2);
        // B stored n-major.
        let mut d2 = rm(m, n, k);
        (d2.b_rs, d2.b_cs) = (1, k as isize);
        check_both(&Case::new(d2), 2);
        // Both, and C column-major.
        d.b_rs = 1;
        d.b_cs = k as isize;
        (d.c_rs, d.c_cs) = (1, m as isize);
        check_both(&Case::new(d), 2);
    }
}

#[test]
fn non_unit_strides() {
    let d = GemmDesc {
        a_rs: 3 * 10,
        a_cs: 3,
        b_rs: 2 * 12,
        b_cs: 2,
        c_rs: 50,
        c_cs: 5,
        ..rm(6, 9, 10)
    };
    check_both(&Case::new(d), 2);
}

#[test]
fn negative_strides() {
    let d = GemmDesc {
        a_rs: -8,
        a_cs: 1,
        b_rs: 9,
        b_cs: -1,
        c_rs: -1,
        c_cs: -20,
        ..rm(7, 9, 8)
    };
    check_both(&Case::new(d), 2);
    let big = GemmDesc {
        a_rs: -70,
        a_cs: -1,
        b_rs: -50,
        b_cs: 1,
        c_rs: 50,
        c_cs: -1,
        ..rm(60, 50, 70)
    };
    check_both(&Case::new(big), 2);
}

#[test]
fn zero_strides_broadcast() {
    // Every row of A is the same vector; every column of B the same.
    check_both(
        &Case::new(GemmDesc {
            a_rs: 0,
            ..rm(5, 6, 7)
        }),
        2,
    );
    check_both(
        &Case::new(GemmDesc {
            b_cs: 0,
            ..rm(5, 6, 7)
        }),
        2,
    );
    // A constant along k, B constant along k.
    check_both(
        &Case::new(GemmDesc {
            a_cs: 0,
            b_rs: 0,
            ..rm(40, 50, 60)
        }),
        2,
    );
    // A batch loop that reuses the same B (stride 0).
    check_both(&Case::new(rm(4, 5, 6)).with_loop(3, 24, 0, 20), 2);
}

#[test]
fn batched_outer_loops() {
    // C[b1, b2, m, n] = A[b1, b2, m, k] * B[b2, k, n]; B shared across b1.
    let (m, n, k) = (5, 4, 3);
    let case = Case::new(rm(m, n, k))
        .with_loop(2, (3 * m * k) as isize, 0, (3 * m * n) as isize)
        .with_loop(3, (m * k) as isize, (k * n) as isize, (m * n) as isize);
    check_both(&case, 1);
    check_both(&case, 2);
    // A batch loop that is not the outermost in C's layout.
    let case = Case::new(GemmDesc {
        c_rs: (3 * n) as isize,
        ..rm(m, n, k)
    })
    .with_loop(3, (m * k) as isize, (k * n) as isize, n as isize);
    check_both(&case, 2);
}

#[test]
fn reduction_outer_loops() {
    let (m, n, k) = (6, 5, 4);
    // C[m, n] = sum_r A[r, m, k] B[r, k, n].
    let case = Case::new(rm(m, n, k)).with_loop(3, (m * k) as isize, (k * n) as isize, 0);
    for acc in [false, true] {
        let mut c = case.clone();
        c.desc.accumulate = acc;
        check_both(&c, 2);
        check::<f64>(&c, 1, if acc { None } else { Some(f64::NAN) }).unwrap();
    }
    // Reduction between two batch loops, and one inside.
    let case = Case::new(rm(m, n, k))
        .with_loop(2, 1000, 500, (2 * m * n) as isize)
        .with_loop(3, (m * k) as isize, (k * n) as isize, 0)
        .with_loop(2, 100, 200, (m * n) as isize)
        .with_loop(2, 7, 3, 0);
    check_both(&case, 1);
    check_both(&case, 2);
}

#[test]
fn many_reductions_split_over_threads() {
    // Enough reduction iterations of one C for the parallel-sums path: partial C tiles
    // per thread, added at the end. C is column-major to check the final addition.
    let (m, n, k) = (7, 5, 3);
    for alpha in [1.0, -0.5] {
        for accumulate in [false, true] {
            let case = Case::new(GemmDesc { c_rs: 1, c_cs: m as isize, alpha, accumulate, ..rm(m, n, k) })
                .with_loop(9, (m * k) as isize, (k * n) as isize, 0)
                .with_loop(2, (9 * m * k) as isize, 1, 0);
            check_both(&case, 2);
            check::<f64>(&case, 2, if accumulate { None } else { Some(f64::NAN) }).unwrap();
        }
    }
}

#[test]
fn reductions_of_a_large_c_are_packed_into_one_gemm() {
    // m·n reaches the packed path: the reduction slices of A and B are copied side by
    // side and multiplied once. A is read transposed (m stride 1), as in eggroll's update.
    let (m, n, k) = (256, 257, 3);
    for accumulate in [false, true] {
        let case = Case::new(GemmDesc { a_rs: 1, a_cs: (m * 2) as isize, accumulate, alpha: 0.5, ..rm(m, n, k) })
            .with_loop(2, m as isize, (k * n) as isize, 0)
            .with_loop(3, (m * 2 * k) as isize, (2 * k * n) as isize, 0);
        check_both(&case, 2);
        check::<f64>(&case, 1, if accumulate { None } else { Some(f64::NAN) }).unwrap();
    }
}

#[test]
fn accumulate_and_alpha() {
    for alpha in [1.0, 2.5, -0.5, 0.0] {
        for accumulate in [false, true] {
            for (m, n, k) in [(3, 4, 5), (2, 2, 1), (20, 30, 40), (100, 1, 50)] {
                let case = Case::new(GemmDesc {
                    alpha,
                    accumulate,
                    ..rm(m, n, k)
                });
                check_both(&case, 2);
            }
        }
    }
}

#[test]
fn empty_and_unit_sizes() {
    for (m, n, k) in [
        (0, 3, 4),
        (3, 0, 4),
        (0, 0, 0),
        (1, 1, 1),
        (1, 1, 0),
        (3, 4, 0),
        (1, 5, 1),
        (5, 1, 1),
    ] {
        for accumulate in [false, true] {
            let case = Case::new(GemmDesc {
                accumulate,
                ..rm(m, n, k)
            });
            check_both(&case, 2);
            // k == 0 with a reduction loop: C is zeroed (or kept) once, not per iteration.
            check_both(&case.clone().with_loop(4, 1, 1, 0), 2);
        }
    }
    // An outer loop of extent 0 runs no GEMM: C keeps its contents.
    check_both(&Case::new(rm(3, 3, 3)).with_loop(0, 9, 9, 9), 2);
    check::<f32>(
        &Case::new(rm(3, 3, 3)).with_loop(0, 9, 9, 9),
        2,
        Some(f64::NAN),
    )
    .unwrap();
}

#[test]
fn skinny_shapes() {
    for (m, n, k) in [
        (1, 300, 200),
        (300, 1, 200),
        (200, 300, 1),
        (200, 300, 2),
        (2, 500, 64),
        (500, 3, 64),
        (1, 1, 1000),
        (64, 64, 1),
    ] {
        check_both(&Case::new(rm(m, n, k)), 2);
        // The same with C column-major, which the gemm crate handles by transposing.
        check_both(
            &Case::new(GemmDesc {
                c_rs: 1,
                c_cs: m as isize,
                ..rm(m, n, k)
            }),
            2,
        );
    }
}

#[test]
fn nan_in_c_does_not_leak_into_an_overwrite() {
    // Shapes chosen to hit each of the gemm crate's paths: the small horizontal kernel,
    // k <= 2 (outer product), matrix-vector on either side, and the packed kernel.
    let shapes = [
        (4, 4, 8),
        (16, 16, 3),
        (8, 8, 1),
        (30, 40, 2),
        (300, 1, 50),
        (1, 300, 50),
        (64, 64, 64),
        (200, 150, 130),
        (5, 5, 0),
    ];
    for (m, n, k) in shapes {
        for threads in [1, 2] {
            let row = Case::new(rm(m, n, k));
            let col = Case::new(GemmDesc {
                c_rs: 1,
                c_cs: m as isize,
                a_rs: 1,
                a_cs: m as isize,
                ..rm(m, n, k)
            });
            for case in [row, col] {
                check::<f32>(&case, threads, Some(f64::NAN)).unwrap();
                check::<f64>(&case, threads, Some(f64::NAN)).unwrap();
                check::<f64>(&case, threads, Some(f64::INFINITY)).unwrap();
            }
        }
    }
}

#[test]
fn parallel_outer_path() {
    // Many independent small GEMMs on two threads: the outer loop runs in parallel (in a
    // two-thread pool, so that this holds on a one-core machine too).
    with_threads(2, parallel_outer_cases).unwrap();
}

fn parallel_outer_cases() {
    let (m, n, k) = (8, 8, 8);
    let case =
        Case::new(rm(m, n, k)).with_loop(64, (m * k) as isize, (k * n) as isize, (m * n) as isize);
    check_both(&case, 2);
    // With a reduction loop inside each region and an NaN-filled C.
    let case = case.with_loop(3, 64 * 64, 64 * 64, 0);
    check_both(&case, 2);
    check::<f32>(&case, 2, Some(f64::NAN)).unwrap();
    // Asking for more threads than the pool has is capped, not an error.
    check_both(&case, 16);
}

#[test]
fn unsafe_entry_point_matches_slices() {
    let d = rm(3, 2, 2);
    let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [1.0f64, 2.0, 3.0, 4.0];
    let mut c = [0.0f64; 6];
    // SAFETY: 3x2 row-major A, 2x2 B, 3x2 C fit the arrays.
    unsafe { gemm(&d, &[], a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), 1) };
    assert_eq!(c, [7.0, 10.0, 15.0, 22.0, 23.0, 34.0]);
}

#[test]
fn bad_layouts_are_refused() {
    let d = rm(3, 3, 3);
    let (a, b) = (vec![0.0f32; 9], vec![0.0f32; 9]);
    let mut c = vec![0.0f32; 9];
    // C too short.
    assert!(gemm_slices(&d, &[], (&a, 0), (&b, 0), (&mut c[..8], 0), 1).is_err());
    // A walks below its origin.
    let neg = GemmDesc { a_rs: -3, ..d };
    assert!(gemm_slices(&neg, &[], (&a, 0), (&b, 0), (&mut c, 0), 1).is_err());
    assert!(gemm_slices(&neg, &[], (&a, 6), (&b, 0), (&mut c, 0), 1).is_ok());
    // C elements that alias each other.
    let alias = GemmDesc {
        c_rs: 1,
        c_cs: 1,
        ..d
    };
    assert!(gemm_slices(&alias, &[], (&a, 0), (&b, 0), (&mut c, 0), 1).is_err());
    // Independent iterations writing the same C region.
    let lp = [GemmLoop {
        extent: 2,
        stride_a: 0,
        stride_b: 0,
        stride_c: 1,
    }];
    let mut c2 = vec![0.0f32; 20];
    assert!(gemm_slices(&d, &lp, (&a, 0), (&b, 0), (&mut c2, 0), 1).is_err());
}

/// A random case: small sizes, arbitrary A/B strides (zero and negative included), a C
/// layout that is a signed, possibly padded permutation of (m, n, batch loops), and
/// batch/reduction loops in any order.
fn arb_case() -> impl Strategy<Value = Case> {
    let size = 0usize..6;
    let stride = -6isize..=6;
    let lp = (0usize..4, -20isize..=20, -20isize..=20, any::<bool>());
    (
        (size.clone(), size.clone(), size),
        prop::collection::vec(stride, 4),
        prop::collection::vec(lp, 0..4),
        (
            prop::collection::vec(any::<u8>(), 6),
            prop::collection::vec(any::<bool>(), 6),
            prop::collection::vec(1isize..=2, 6),
        ),
        (
            any::<bool>(),
            prop::sample::select(vec![1.0, -1.0, 0.5, 2.0, 0.0]),
        ),
    )
        .prop_map(
            |((m, n, k), s, loops, (keys, signs, gaps), (accumulate, alpha))| {
                let mut desc = GemmDesc {
                    a_rs: s[0],
                    a_cs: s[1],
                    b_rs: s[2],
                    b_cs: s[3],
                    alpha,
                    accumulate,
                    ..GemmDesc::row_major(m, n, k)
                };
                let outer: Vec<GemmLoop> = loops
                    .iter()
                    .map(|&(extent, sa, sb, red)| GemmLoop {
                        extent,
                        stride_a: sa,
                        stride_b: sb,
                        stride_c: if red { 0 } else { 1 },
                    })
                    .collect();
                // Dimensions of C: 0 = m, 1 = n, 2.. = batch loops; lay them out in key order.
                let mut cdims: Vec<(usize, usize)> = vec![(0, m), (1, n)];
                for (i, l) in outer.iter().enumerate() {
                    if l.stride_c != 0 {
                        cdims.push((2 + i, l.extent));
                    }
                }
                cdims.sort_by_key(|&(id, _)| (keys[id.min(5)], id));
                let mut next = 1isize;
                let mut strides = vec![0isize; 2 + outer.len()];
                for &(id, e) in &cdims {
                    let g = gaps[id.min(5)];
                    let sign = if signs[id.min(5)] { -1 } else { 1 };
                    strides[id] = sign * next * g;
                    next *= g * e.max(1) as isize;
                }
                desc.c_rs = strides[0];
                desc.c_cs = strides[1];
                let outer = outer
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| {
                        if l.stride_c != 0 {
                            GemmLoop {
                                stride_c: strides[2 + i],
                                ..l
                            }
                        } else {
                            l
                        }
                    })
                    .collect();
                Case { desc, outer }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_small_cases_match_the_reference(case in arb_case(), threads in 1usize..=3, nan_c in any::<bool>()) {
        let init = if nan_c && !case.desc.accumulate { Some(f64::NAN) } else { None };
        prop_assert_eq!(check::<f32>(&case, threads, init), Ok(()));
        prop_assert_eq!(check::<f64>(&case, threads, init), Ok(()));
    }
}
