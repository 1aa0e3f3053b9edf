//! Helpers shared by the file-driven tests.

use std::path::Path;

/// The sizes of a `# dims: n=64, d=16` header line, after its prefix.
pub fn dim_list(list: &str, path: &Path) -> Vec<(String, u64)> {
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or_else(|| panic!("{}: bad dims entry `{p}`", path.display()));
            (n.trim().to_string(), v.trim().parse().unwrap_or_else(|_| panic!("{}: bad size in `{p}`", path.display())))
        })
        .collect()
}
