//! Reading and writing `.npy` files as [`Tensor`]s.
//!
//! The whole file is read into memory and its preamble, header and data length are
//! checked here before `ndarray-npy` decodes it. That order matters: `ndarray-npy`
//! allocates the array from the header's shape before it reads the data, so a corrupt
//! or hostile header must never reach it unchecked.

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use tessera::{DType, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The deepest bracket nesting accepted in a header. Real headers nest two or three
/// levels deep; the cap keeps a hostile header from exhausting the parser's stack.
const MAX_HEADER_NESTING: usize = 64;

/// Why a `.npy` file could not be read or written, with an optional hint.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyError {
    pub reason: String,
    pub help: Option<String>,
}

impl NpyError {
    fn new(reason: impl Into<String>) -> NpyError {
        NpyError {
            reason: reason.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> NpyError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The reason an I/O operation failed, without Rust's "(os error N)" suffix.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// Reads a float32 or float64 `.npy` file of any rank and memory order.
pub fn read_tensor(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError::new(io_reason(&e)))?;
    decode(&bytes)
}

/// An array read for an integer index input.
pub enum Ints {
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
}

/// What a `.npy` file holds: floats, or integers (for index inputs).
pub enum Npy {
    Float(Tensor),
    Int(Ints),
}

/// Reads an int32 or int64 `.npy` file (an index input), of any rank and memory order.
pub fn read_ints(path: &Path) -> Result<Ints, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError::new(io_reason(&e)))?;
    match decode_any(&bytes)? {
        Npy::Int(x) => Ok(x),
        Npy::Float(t) => Err(NpyError::new(format!(
            "its dtype is {}, but index inputs are int32 or int64 arrays",
            numpy_name(t.dtype())
        ))
        .with_help("save the indices as integers, e.g. np.save(path, idx.astype(np.int64))")),
    }
}

/// Decodes the bytes of a float32 or float64 `.npy` file.
pub fn decode(bytes: &[u8]) -> Result<Tensor, NpyError> {
    match decode_any(bytes)? {
        Npy::Float(t) => Ok(t),
        Npy::Int(x) => Err(float_only(match x {
            Ints::I32(_) => "int32 (`<i4`)",
            Ints::I64(_) => "int64 (`<i8`)",
        })),
    }
}

/// The elements a header's descriptor gives: a float dtype, or 4- or 8-byte integers.
#[derive(Clone, Copy)]
enum Elem {
    Float(DType),
    I32,
    I64,
}

impl Elem {
    fn size_of(self) -> usize {
        match self {
            Elem::Float(d) => d.size_of(),
            Elem::I32 => 4,
            Elem::I64 => 8,
        }
    }

    fn numpy_name(self) -> &'static str {
        match self {
            Elem::Float(d) => numpy_name(d),
            Elem::I32 => "int32",
            Elem::I64 => "int64",
        }
    }
}

/// Decodes the bytes of a `.npy` file of floats or of 4- or 8-byte integers.
fn decode_any(bytes: &[u8]) -> Result<Npy, NpyError> {
    let not_npy = || {
        let e =
            NpyError::new("it is not a .npy file (it does not start with the bytes \\x93NUMPY)");
        if bytes.starts_with(b"PK\x03\x04") {
            e.with_help("this looks like a .npz archive; save each array with numpy.save instead")
        } else {
            e.with_help("write the array with numpy.save (or ndarray-npy)")
        }
    };
    if bytes.is_empty() {
        return Err(NpyError::new("the file is empty; it is not a .npy file")
            .with_help("write the array with numpy.save (or ndarray-npy)"));
    }
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            truncated_header()
        } else {
            not_npy()
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(not_npy());
    }
    let header_end = header_end(bytes)?;
    let header_text = String::from_utf8_lossy(&bytes[10.min(header_end)..header_end]);
    if nesting_depth(&header_text) > MAX_HEADER_NESTING {
        return Err(NpyError::new(
            "the .npy header is malformed (it nests too deeply)",
        ));
    }
    let header = Header::from_reader(&mut &bytes[..header_end]).map_err(|e| {
        NpyError::new(format!(
            "the .npy header is malformed ({})",
            header_error(&e)
        ))
    })?;
    let dtype = elem(&header.type_descriptor)?;
    let shape_text = shape_text(&header.shape);
    let elements = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d));
    let data_len = elements.and_then(|n| n.checked_mul(dtype.size_of()));
    let data_len = match data_len {
        Some(n) if n <= isize::MAX as usize => n,
        _ => {
            return Err(NpyError::new(format!(
                "the .npy header describes an array of shape {shape_text}, which is too large"
            )))
        }
    };
    let found = bytes.len() - header_end;
    if found < data_len {
        return Err(NpyError::new(format!(
            "the file is truncated: its header describes a {} array of shape {shape_text} \
             ({data_len} bytes of data), but only {found} bytes follow the header",
            dtype.numpy_name()
        )));
    }
    if found > data_len {
        return Err(NpyError::new(format!(
            "the file is corrupt: {} bytes follow the end of the {} array of shape {shape_text}",
            found - data_len,
            dtype.numpy_name()
        )));
    }
    // The preamble, header and data length are all checked, so decoding cannot fail for
    // a reason not already reported; map any error anyway rather than trusting that.
    let decoded = match dtype {
        Elem::Float(DType::F32) => ArrayD::<f32>::read_npy(bytes).map(|a| Npy::Float(Tensor::F32(a))),
        Elem::Float(DType::F64) => ArrayD::<f64>::read_npy(bytes).map(|a| Npy::Float(Tensor::F64(a))),
        Elem::I32 => ArrayD::<i32>::read_npy(bytes).map(|a| Npy::Int(Ints::I32(a))),
        Elem::I64 => ArrayD::<i64>::read_npy(bytes).map(|a| Npy::Int(Ints::I64(a))),
    };
    decoded.map_err(|e| NpyError::new(format!("the file is corrupt ({e})")))
}

/// Writes a tensor as a C-order `.npy` file of its own dtype.
pub fn write_tensor(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let file = File::create(path).map_err(|e| NpyError::new(io_reason(&e)))?;
    let mut writer = BufWriter::new(file);
    let written = match tensor {
        Tensor::F32(a) => a.as_standard_layout().write_npy(&mut writer),
        Tensor::F64(a) => a.as_standard_layout().write_npy(&mut writer),
    };
    written.map_err(|e| NpyError::new(e.to_string()))?;
    writer.flush().map_err(|e| NpyError::new(io_reason(&e)))
}

fn truncated_header() -> NpyError {
    NpyError::new("the file is truncated inside its .npy header")
}

/// The offset just past the header, after checking the version and that the header
/// fits in the file.
fn header_end(bytes: &[u8]) -> Result<usize, NpyError> {
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => return Err(truncated_header()),
    };
    let (len_start, len_size) = match (major, minor) {
        (1, 0) => (8, 2),
        (2, 0) | (3, 0) => (8, 4),
        _ => {
            return Err(NpyError::new(format!(
                "unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported)"
            )))
        }
    };
    let len_bytes = bytes
        .get(len_start..len_start + len_size)
        .ok_or_else(truncated_header)?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |n, &b| (n << 8) | usize::from(b));
    let end = len_start + len_size + header_len;
    if end > bytes.len() {
        return Err(truncated_header());
    }
    Ok(end)
}

fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A one-line reason for a header that does not parse. `ndarray-npy`'s own messages
/// can span lines (pest's excerpts) and misspell a key, so each case is worded here.
fn header_error(e: &ndarray_npy::npy::header::ReadHeaderError) -> String {
    use ndarray_npy::npy::header::{ParseHeaderError as P, ReadHeaderError};
    let parse = match e {
        ReadHeaderError::Io(io) => return io_reason(io),
        ReadHeaderError::Parse(p) => p,
    };
    match parse {
        P::MagicString => "it does not start with the bytes \\x93NUMPY".to_string(),
        P::Version { major, minor } => format!("unsupported format version {major}.{minor}"),
        P::HeaderLengthOverflow(n) => format!("its length {n} is too large"),
        P::NonAscii => "it is not ASCII text".to_string(),
        P::Utf8Parse(_) => "it is not UTF-8 text".to_string(),
        P::UnknownKey(k) => format!("unknown key {}", short(&k.to_string())),
        P::MissingKey(k) if k == "shaper" => "no 'shape' key".to_string(),
        P::MissingKey(k) => format!("no '{k}' key"),
        P::IllegalValue { key, value } => {
            format!(
                "'{key}' is {}, which is not valid there",
                short(&value.to_string())
            )
        }
        P::DictParse(_) => "it is not a Python dict literal".to_string(),
        P::MetaNotDict(_) => "it is not a Python dict".to_string(),
        P::MissingNewline => "it does not end with a newline".to_string(),
    }
}

/// A value from a file, cut to a length that fits in a one-line message.
fn short(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// The dtype of a header's descriptor, or an error naming the numpy dtype found.
///
/// `ndarray-npy` does not re-export its Python-literal type, so the descriptor is
/// inspected through its Python spelling (`'<f8'`, `[('a', '<i4')]`).
fn elem(descr: &impl fmt::Display) -> Result<Elem, NpyError> {
    let literal = descr.to_string();
    match literal.as_str() {
        "'<f4'" | "'>f4'" => return Ok(Elem::Float(DType::F32)),
        "'<f8'" | "'>f8'" => return Ok(Elem::Float(DType::F64)),
        "'<i4'" | "'>i4'" => return Ok(Elem::I32),
        "'<i8'" | "'>i8'" => return Ok(Elem::I64),
        _ => {}
    }
    Err(float_only(&describe_descriptor(&literal)))
}

fn float_only(found: &str) -> NpyError {
    NpyError::new(format!(
        "its dtype is {found}, but tessera reads only float32 and float64 arrays (and int32 or int64 ones for index inputs)"
    ))
    .with_help("convert it in numpy first, e.g. np.save(path, np.load(path).astype(np.float64))")
}

/// The numpy name of a descriptor given as a Python literal, e.g. `'<i8'` is `int64`.
fn describe_descriptor(literal: &str) -> String {
    if literal.starts_with('[') {
        return "a structured dtype".to_string();
    }
    let s = match literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
    {
        Some(s) => s,
        None => return format!("`{literal}`"),
    };
    let (order, rest) = match s.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &s[1..]),
        _ => ('|', s),
    };
    let mut chars = rest.chars();
    let kind = chars.next();
    let size: Option<u32> = chars.as_str().parse().ok();
    let name = match (kind, size) {
        (Some('f'), Some(2)) => "float16".to_string(),
        (Some('f'), Some(n)) => format!("float{}", n.saturating_mul(8)),
        (Some('i'), Some(n)) => format!("int{}", n.saturating_mul(8)),
        (Some('u'), Some(n)) => format!("uint{}", n.saturating_mul(8)),
        (Some('c'), Some(n)) => format!("complex{}", n.saturating_mul(8)),
        (Some('b' | '?'), _) => "bool".to_string(),
        (Some('O'), _) => "object".to_string(),
        (Some('U'), _) => "a unicode string dtype".to_string(),
        (Some('S' | 'a'), _) => "a bytes dtype".to_string(),
        (Some('M'), _) => "datetime64".to_string(),
        (Some('m'), _) => "timedelta64".to_string(),
        (Some('V'), _) => "void".to_string(),
        _ => return format!("`{s}`"),
    };
    if order == '>' {
        format!("{name} (big-endian, `{s}`)")
    } else {
        format!("{name} (`{s}`)")
    }
}

/// numpy's name for a dtype.
pub fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
    }
}

/// A shape as numpy prints it: `(2, 3)`, `(4,)`, `()`.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr0, arr2, Array2, ShapeBuilder};

    fn encode<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
        a: &ndarray::Array<A, D>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        a.write_npy(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_f32_f64_and_zero_d() {
        let a = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(decode(&encode(&a)).unwrap(), Tensor::F32(a.into_dyn()));
        let b = arr0(2.5f64);
        assert_eq!(decode(&encode(&b)).unwrap(), Tensor::F64(b.into_dyn()));
    }

    #[test]
    fn reads_fortran_order() {
        let mut f = Array2::<f64>::zeros((2, 3).f());
        for ((i, j), x) in f.indexed_iter_mut() {
            *x = (i * 10 + j) as f64;
        }
        let bytes = encode(&f);
        assert!(String::from_utf8_lossy(&bytes).contains("'fortran_order': True"));
        let t = decode(&bytes).unwrap();
        assert_eq!(t.to_f64()[[1, 2]], 12.0);
        assert_eq!(t.shape(), &[2, 3]);
    }

    #[test]
    fn rejects_int_with_its_numpy_name() {
        let e = decode(&encode(&arr2(&[[1i64, 2]]))).unwrap_err();
        assert!(e.reason.contains("int64"), "{}", e.reason);
        assert!(e.help.unwrap().contains("astype"));
    }

    #[test]
    fn rejects_truncated_and_extra_data() {
        let bytes = encode(&arr2(&[[1.0f64, 2.0], [3.0, 4.0]]));
        let e = decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(
            e.reason.contains("truncated") && e.reason.contains("29 bytes"),
            "{}",
            e.reason
        );
        let e = decode(&bytes[..20]).unwrap_err();
        assert!(
            e.reason.contains("truncated inside its .npy header"),
            "{}",
            e.reason
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().reason.contains("1 bytes follow"));
    }

    #[test]
    fn rejects_empty_and_foreign_files() {
        assert!(decode(b"").unwrap_err().reason.contains("empty"));
        assert!(decode(b"\x93NU").unwrap_err().reason.contains("truncated"));
        let e = decode(b"hello, world").unwrap_err();
        assert!(e.reason.contains("not a .npy file"));
        let e = decode(b"PK\x03\x04rest of a zip").unwrap_err();
        assert!(e.help.unwrap().contains(".npz"));
    }

    #[test]
    fn rejects_a_huge_shape_without_allocating() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        let e = decode(&bytes).unwrap_err();
        assert!(e.reason.contains("truncated"), "{}", e.reason);
        let header =
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let padded = format!("{header:<117}\n");
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        assert!(decode(&bytes).unwrap_err().reason.contains("too large"));
    }

    #[test]
    fn rejects_deeply_nested_headers() {
        let header = format!("{}{}", "(".repeat(10_000), ")".repeat(10_000));
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&((header.len() + 1) as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        assert!(decode(&bytes)
            .unwrap_err()
            .reason
            .contains("nests too deeply"));
    }

    #[test]
    fn header_errors_are_one_line() {
        let header = |text: &str| {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(b'\n');
            decode(&bytes).unwrap_err().reason
        };
        assert_eq!(
            header("{'descr': ?? }"),
            "the .npy header is malformed (it is not a Python dict literal)"
        );
        assert_eq!(
            header("{'descr': '<f8', 'fortran_order': False}"),
            "the .npy header is malformed (no 'shape' key)"
        );
        let long = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': '{}'}}",
            "x".repeat(99)
        );
        let reason = header(&long);
        assert!(
            reason.starts_with("the .npy header is malformed ('shape' is 'xxx"),
            "{reason}"
        );
        assert!(
            reason.ends_with("..., which is not valid there)"),
            "{reason}"
        );
        assert_eq!(
            header("[1, 2]"),
            "the .npy header is malformed (it is not a Python dict)"
        );
    }

    #[test]
    fn describes_other_dtypes() {
        let s = |d: &str| describe_descriptor(&format!("'{d}'"));
        assert_eq!(s("|b1"), "bool (`|b1`)");
        assert_eq!(s("<c16"), "complex128 (`<c16`)");
        assert_eq!(s("|O"), "object (`|O`)");
        assert_eq!(s(">i4"), "int32 (big-endian, `>i4`)");
        assert_eq!(s("<f2"), "float16 (`<f2`)");
        assert_eq!(describe_descriptor("[('a', '<i4')]"), "a structured dtype");
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(shape_text(&[]), "()");
        assert_eq!(shape_text(&[4]), "(4,)");
        assert_eq!(shape_text(&[2, 3]), "(2, 3)");
    }

    mod no_panics {
        use super::super::decode;
        use super::encode;
        use ndarray::arr2;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode(&bytes);
            }

            #[test]
            fn on_any_bytes_after_the_magic(rest in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode(&[b"\x93NUMPY".as_slice(), &rest].concat());
            }

            #[test]
            fn on_mutated_files(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                                cut in any::<prop::sample::Index>()) {
                let mut bytes = encode(&arr2(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]]));
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                let _ = decode(&bytes);
                let _ = decode(&bytes[..cut.index(bytes.len())]);
            }
        }
    }
}
