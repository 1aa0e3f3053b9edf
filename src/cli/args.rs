//! Parsers for the values of command-line arguments: `--dim n=4`, `--memory-limit 4GiB`,
//! `A=a.npy` inputs and `-o` outputs. Each returns a message that clap shows after
//! "invalid value '...' for '...'", so messages start with what was expected.

use std::path::PathBuf;

/// `NAME=SIZE` from `--dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct DimArg {
    pub name: String,
    pub size: u64,
}

/// `NAME=FILE.npy`, one input of `tessera run`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputArg {
    pub name: String,
    pub path: PathBuf,
}

/// One `-o`: a bare path (for the only output) or `NAME=PATH`.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputArg {
    Bare(PathBuf),
    Named { name: String, path: PathBuf },
}

/// Whether `s` can name a dim, tensor or function in `.tsr` source, where names are
/// Unicode (`α`, `λ`). Alphabetic/alphanumeric stands in for XID_Start/XID_Continue;
/// a name that slips through still meets the function's own list of names.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// `--mul exact|lmul|lmulM`.
pub fn parse_mul(s: &str) -> Result<tessera::MulMode, String> {
    tessera::MulMode::parse(s)
}

pub fn parse_dim(s: &str) -> Result<DimArg, String> {
    let Some((name, size)) = s.split_once('=') else {
        return Err("expected NAME=SIZE, e.g. `--dim n=4096`".to_string());
    };
    let name = name.trim();
    if !is_identifier(name) {
        return Err(format!(
            "`{name}` is not a dim name (names start with a letter or `_`); expected NAME=SIZE, \
             e.g. `--dim n=4096`"
        ));
    }
    let size = size.trim();
    match size.parse::<u64>() {
        Ok(size) => Ok(DimArg {
            name: name.to_string(),
            size,
        }),
        Err(_) if size.is_empty() => Err(format!(
            "no size given for dim `{name}`; e.g. `--dim {name}=64`"
        )),
        Err(_) => Err(format!(
            "the size of dim `{name}` must be a whole number ≥ 0, not `{size}`"
        )),
    }
}

pub fn parse_input(s: &str) -> Result<InputArg, String> {
    let hint = "inputs are given as NAME=FILE.npy, e.g. `A=a.npy`";
    let Some((name, path)) = s.split_once('=') else {
        return Err(format!("expected NAME=FILE.npy; {hint}"));
    };
    if !is_identifier(name) {
        return Err(format!("`{name}` is not an input name; {hint}"));
    }
    if path.is_empty() {
        return Err(format!("no file given for input `{name}`; {hint}"));
    }
    Ok(InputArg {
        name: name.to_string(),
        path: PathBuf::from(path),
    })
}

/// A value with `=` after an identifier names an output; anything else is a path.
pub fn parse_output(s: &str) -> Result<OutputArg, String> {
    if s.is_empty() {
        return Err("expected a path or NAME=PATH".to_string());
    }
    match s.split_once('=') {
        Some((name, path)) if is_identifier(name) => {
            if path.is_empty() {
                Err(format!("no path given for output `{name}`; expected NAME=PATH, e.g. `-o {name}=out.npy`"))
            } else {
                Ok(OutputArg::Named {
                    name: name.to_string(),
                    path: PathBuf::from(path),
                })
            }
        }
        _ => Ok(OutputArg::Bare(PathBuf::from(s))),
    }
}

const SIZE_UNITS: &str =
    "use bytes or a unit: kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB \
     (powers of 1024; K, M, G, T mean the same)";

/// `i=64,j=32` from `--sizes`.
#[derive(Clone, Debug, PartialEq)]
pub struct SizesArg(pub Vec<DimArg>);

/// Label sizes for `--einsum`. A label is one character of those opt_einsum accepts
/// (anything but `,` `.` `-` `>` and whitespace), so `×=3` and `==2` are sizes too: the
/// last `=` separates the label from its size.
pub fn parse_sizes(s: &str) -> Result<SizesArg, String> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(parse_label_size).collect::<Result<_, _>>().map(SizesArg)
}

fn parse_label_size(s: &str) -> Result<DimArg, String> {
    let Some((label, size)) = s.rsplit_once('=') else {
        return Err(format!("expected LABEL=SIZE, not `{}`; e.g. `--sizes i=64,j=32`", s.trim()));
    };
    let label = label.trim();
    let mut chars = label.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if tessera_compiler::einsum::is_label(c) => {}
        _ => {
            return Err(format!(
                "`{label}` is not an einsum label: a label is one character other than \
                 `,` `.` `-` `>` and whitespace; e.g. `--sizes i=64,j=32`"
            ))
        }
    }
    let size = size.trim();
    match size.parse::<u64>() {
        Ok(size) => Ok(DimArg { name: label.to_string(), size }),
        Err(_) if size.is_empty() => Err(format!("no size given for label `{label}`; e.g. `--sizes {label}=64`")),
        Err(_) => Err(format!("the size of label `{label}` must be a whole number ≥ 0, not `{size}`")),
    }
}

/// A byte count: `4GiB`, `512MiB`, `1.5GB`, `1e9`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!(
            "expected a size such as 4GiB, 512MiB or 1e9; {SIZE_UNITS}"
        ));
    }
    if t.starts_with('-') {
        return Err("a size cannot be negative".to_string());
    }
    let split = unit_start(t);
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        _ => return Err(format!("unknown unit `{unit}`; {SIZE_UNITS}")),
    };
    if number.is_empty() {
        return Err(format!(
            "no number before the unit `{unit}`; e.g. `4{unit}`"
        ));
    }
    // Whole numbers are multiplied exactly; only fractions and exponents go through f64.
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(scale)
            .ok_or_else(|| "the size does not fit in 64 bits".to_string());
    }
    let value = match number.parse::<f64>() {
        Ok(v) if v.is_finite() => v * scale as f64,
        _ => return Err(format!("`{number}` is not a number; {SIZE_UNITS}")),
    };
    if value >= 18_446_744_073_709_551_616.0 {
        return Err("the size does not fit in 64 bits".to_string());
    }
    Ok(value.round() as u64)
}

/// Where the unit starts: the first letter that is not the `e` of an exponent.
fn unit_start(t: &str) -> usize {
    let bytes = t.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii_alphabetic() {
            continue;
        }
        let exponent = matches!(b, b'e' | b'E')
            && i > 0
            && bytes[i - 1].is_ascii_digit()
            && match bytes.get(i + 1) {
                Some(c) if c.is_ascii_digit() => true,
                Some(b'+' | b'-') => bytes.get(i + 2).is_some_and(u8::is_ascii_digit),
                _ => false,
            };
        if !exponent {
            return i;
        }
    }
    t.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("1e9"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("2.5e3KiB"), Ok(2_560_000));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn bad_sizes() {
        assert!(parse_size("").unwrap_err().contains("expected a size"));
        assert!(parse_size("4XB").unwrap_err().contains("unknown unit `XB`"));
        assert!(parse_size("-1GiB").unwrap_err().contains("negative"));
        assert!(parse_size("GiB").unwrap_err().contains("no number"));
        assert!(parse_size("1.2.3MB").unwrap_err().contains("not a number"));
        assert!(parse_size("99999999TiB").unwrap_err().contains("64 bits"));
        assert!(parse_size("1e30").unwrap_err().contains("64 bits"));
        assert!(parse_size("inf").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1e").unwrap_err().contains("unknown unit `e`"));
    }

    #[test]
    fn dims() {
        assert_eq!(
            parse_dim("n=4096"),
            Ok(DimArg {
                name: "n".into(),
                size: 4096
            })
        );
        assert_eq!(
            parse_dim("n_2 = 3"),
            Ok(DimArg {
                name: "n_2".into(),
                size: 3
            })
        );
        assert!(parse_dim("n").unwrap_err().contains("expected NAME=SIZE"));
        assert!(parse_dim("4=3").unwrap_err().contains("not a dim name"));
        assert!(parse_dim("n=").unwrap_err().contains("no size given"));
        assert!(parse_dim("n=-3").unwrap_err().contains("whole number"));
        assert!(parse_dim("n=4.5").unwrap_err().contains("whole number"));
    }

    #[test]
    fn einsum_sizes_take_every_opt_einsum_label() {
        let names = |s: &str| parse_sizes(s).map(|v| v.0.into_iter().map(|d| (d.name, d.size)).collect::<Vec<_>>());
        assert_eq!(names("i=64, j=32"), Ok(vec![("i".into(), 64), ("j".into(), 32)]));
        assert_eq!(names("×=2,÷=3,À=4"), Ok(vec![("×".into(), 2), ("÷".into(), 3), ("À".into(), 4)]));
        assert_eq!(names("1=2,_=3,==4,!=5"), Ok(vec![("1".into(), 2), ("_".into(), 3), ("=".into(), 4), ("!".into(), 5)]));
        assert!(parse_sizes("ij=3").unwrap_err().contains("not an einsum label"));
        assert!(parse_sizes(".=3").unwrap_err().contains("not an einsum label"));
        assert!(parse_sizes("=3").unwrap_err().contains("not an einsum label"));
        assert!(parse_sizes("i").unwrap_err().contains("expected LABEL=SIZE"));
        assert!(parse_sizes("i=").unwrap_err().contains("no size given for label `i`"));
        assert!(parse_sizes("×=-1").unwrap_err().contains("whole number"));
    }

    #[test]
    fn names_may_be_unicode() {
        assert!(is_identifier("α") && is_identifier("x_2") && is_identifier("_"));
        assert!(!is_identifier("2x") && !is_identifier("a-b") && !is_identifier(""));
        assert_eq!(
            parse_dim("λ=3"),
            Ok(DimArg {
                name: "λ".into(),
                size: 3
            })
        );
        assert_eq!(
            parse_output("β=b.npy"),
            Ok(OutputArg::Named {
                name: "β".into(),
                path: "b.npy".into()
            })
        );
    }

    #[test]
    fn inputs_and_outputs() {
        assert_eq!(
            parse_input("A=dir/a=1.npy"),
            Ok(InputArg {
                name: "A".into(),
                path: "dir/a=1.npy".into()
            })
        );
        assert!(parse_input("a.npy").unwrap_err().contains("NAME=FILE.npy"));
        assert!(parse_input("A=")
            .unwrap_err()
            .contains("no file given for input `A`"));
        assert!(parse_input("1A=a.npy")
            .unwrap_err()
            .contains("not an input name"));
        assert_eq!(
            parse_output("out.npy"),
            Ok(OutputArg::Bare("out.npy".into()))
        );
        assert_eq!(
            parse_output("./x=1.npy"),
            Ok(OutputArg::Bare("./x=1.npy".into()))
        );
        assert_eq!(
            parse_output("C=c.npy"),
            Ok(OutputArg::Named {
                name: "C".into(),
                path: "c.npy".into()
            })
        );
        assert!(parse_output("C=")
            .unwrap_err()
            .contains("no path given for output `C`"));
        assert!(parse_output("").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_dim(&s);
            let _ = parse_input(&s);
            let _ = parse_output(&s);
            let _ = parse_sizes(&s);
        }

        #[test]
        fn whole_byte_counts_round_trip(n in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
        }
    }
}
