//! Helpers shared by the file-driven tests.

use std::path::Path;

/// The sizes of a `# dims: n=64, d=16` header line, after its prefix.
#[allow(dead_code)] // Not every test binary that shares this module reads case files.
pub fn dim_list(list: &str, path: &Path) -> Vec<(String, u64)> {
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or_else(|| panic!("{}: bad dims entry `{p}`", path.display()));
            (n.trim().to_string(), v.trim().parse().unwrap_or_else(|_| panic!("{}: bad size in `{p}`", path.display())))
        })
        .collect()
}

/// Deterministic pseudo-random tensor with entries in [-1, 1) (xorshift, so the tests
/// need no RNG crate and every run sees the same numbers).
#[allow(dead_code)] // Not every test binary that shares this module draws inputs.
pub fn rand(shape: &[usize], seed: u64) -> ndarray::ArrayD<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ndarray::ArrayD::from_shape_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}
