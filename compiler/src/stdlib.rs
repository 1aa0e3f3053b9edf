//! The standard library: `.tsr` modules embedded in the binary, loaded by `use std::NAME`.

/// `(name, source)` of every stdlib module.
pub const MODULES: &[(&str, &str)] = &[("attention", include_str!("../../stdlib/attention.tsr"))];

/// The source of `std::name`, if there is such a module.
pub fn source(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all stdlib modules.
pub fn names() -> Vec<&'static str> {
    MODULES.iter().map(|(n, _)| *n).collect()
}
