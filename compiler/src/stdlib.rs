//! The standard library: `.tsr` modules embedded in the binary, loaded by `use std::NAME`.

/// `(name, source)` of every stdlib module.
pub const MODULES: &[(&str, &str)] = &[
    ("attention", include_str!("../../stdlib/attention.tsr")),
    ("tensor_attention", include_str!("../../stdlib/tensor_attention.tsr")),
    ("tucker", include_str!("../../stdlib/tucker.tsr")),
    ("cp", include_str!("../../stdlib/cp.tsr")),
    ("equivariant", include_str!("../../stdlib/equivariant.tsr")),
    ("graph_poly", include_str!("../../stdlib/graph_poly.tsr")),
    ("lowrank", include_str!("../../stdlib/lowrank.tsr")),
    ("kron", include_str!("../../stdlib/kron.tsr")),
    ("grassmann", include_str!("../../stdlib/grassmann.tsr")),
    ("norm", include_str!("../../stdlib/norm.tsr")),
    ("completion", include_str!("../../stdlib/completion.tsr")),
];

/// The source of `std::name`, if there is such a module.
pub fn source(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all stdlib modules.
pub fn names() -> Vec<&'static str> {
    MODULES.iter().map(|(n, _)| *n).collect()
}
