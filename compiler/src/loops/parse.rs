//! A parser for the loop IR's text form: it reads exactly what `print.rs` prints, so
//! `parse(&p.to_string())` prints the same text again. Its users are the pass file tests
//! (`compiler/tests/loops_passes`), which write programs by hand.
//!
//! The form is line-oriented: a header, the buffers, the slots, then kernels separated by
//! blank lines; loop bodies are indented two spaces a level and close with `}`. Names
//! resolve as the printer wrote them: buffers by name (names are unique), loops by the
//! innermost enclosing `for` of that name, variables by name within their kernel. What
//! the text leaves implicit is derived: the argument and result lists from the buffer
//! kinds, the loop kernels' roles in a tile group (none) and a group's tile buffers (the
//! `tile` buffers its kernels use). Loop and variable ids are numbered in order of
//! appearance. Errors are values with a 1-based line and column, never panics.

use super::*;
use crate::tir::CmpOp;
use std::fmt;

/// A syntax error at `line:col` (1-based, columns in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for ParseError {}

type R<T> = Result<T, ParseError>;

/// Sizes, strides and offsets above this are refused, so that address arithmetic on them
/// (extent × stride, sums of terms) cannot overflow `i64`.
const MAX_INT: u64 = 1 << 40;

/// Expressions and loops nest at most this deep: the parser recurses, and a test
/// thread's 2 MiB stack holds about 128 levels in a debug build.
const MAX_DEPTH: usize = 128;

/// Parses a program in the loop IR's text form.
pub fn parse(text: &str) -> R<Program> {
    let lines: Vec<Line> = text.lines().enumerate().map(|(n, l)| Line { no: n + 1, chars: l.chars().collect() }).collect();
    Parser { lines: &lines, at: 0 }.program()
}

struct Line {
    no: usize,
    chars: Vec<char>,
}

impl Line {
    fn is_blank(&self) -> bool {
        self.chars.iter().all(|c| c.is_whitespace())
    }

    fn indent(&self) -> usize {
        self.chars.iter().take_while(|c| **c == ' ').count()
    }
}

/// A cursor in one line.
struct Cur<'a> {
    line: &'a Line,
    pos: usize,
}

/// Characters that end a name.
fn is_name_char(c: char) -> bool {
    !c.is_whitespace() && !"[](){},#*+-/<>=!&|:;".contains(c)
}

impl<'a> Cur<'a> {
    fn new(line: &'a Line) -> Self {
        Cur { line, pos: 0 }
    }

    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        self.err_at(self.pos, message)
    }

    fn err_at<T>(&self, pos: usize, message: impl Into<String>) -> R<T> {
        Err(ParseError { line: self.line.no, col: pos + 1, message: message.into() })
    }

    fn peek(&self) -> Option<char> {
        self.line.chars.get(self.pos).copied()
    }

    fn rest(&self) -> String {
        self.line.chars[self.pos.min(self.line.chars.len())..].iter().collect()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line.chars.len()
    }

    fn looking_at(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(k, c)| self.line.chars.get(self.pos + k) == Some(&c))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.looking_at(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> R<()> {
        if self.eat(s) {
            Ok(())
        } else {
            let found = match self.peek() {
                None => "the end of the line".to_string(),
                Some(_) => format!("`{}`", self.rest().chars().take(12).collect::<String>()),
            };
            self.err(format!("expected `{s}`, found {found}"))
        }
    }

    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            self.err(format!("unexpected `{}` at the end of the line", self.rest()))
        }
    }

    /// A name: a run of characters that are not whitespace or punctuation, not starting
    /// with a digit.
    fn name(&mut self, what: &str) -> R<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        if self.pos == start || self.line.chars[start].is_ascii_digit() {
            self.pos = start;
            return self.err(format!("expected {what}"));
        }
        Ok(self.line.chars[start..self.pos].iter().collect())
    }

    /// The text up to the last occurrence of `until` on the line (exclusive); the cursor
    /// moves past `until`.
    fn until_last(&mut self, until: &str, what: &str) -> R<String> {
        let rest = self.rest();
        match rest.rfind(until) {
            Some(i) if i > 0 => {
                let text = rest[..i].to_string();
                self.pos += text.chars().count() + until.chars().count();
                Ok(text)
            }
            _ => self.err(format!("expected {what} followed by `{until}`")),
        }
    }

    fn digits(&mut self) -> R<String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err("expected a number");
        }
        Ok(self.line.chars[start..self.pos].iter().collect())
    }

    fn uint(&mut self) -> R<usize> {
        let start = self.pos;
        let d = self.digits()?;
        match d.parse::<u64>() {
            Ok(v) if v <= MAX_INT => Ok(v as usize),
            _ => self.err_at(start, format!("{d} is too large (at most 2^40)")),
        }
    }

    fn int(&mut self) -> R<i64> {
        let start = self.pos;
        let neg = self.eat("-");
        let d = self.digits()?;
        match d.parse::<u64>() {
            Ok(v) if v <= MAX_INT => Ok(if neg { -(v as i64) } else { v as i64 }),
            _ => self.err_at(start, format!("{d} is too large (at most 2^40)")),
        }
    }

    /// A number as `fmt_number` prints it, without a sign: `1.0`, `1e-5`, `inf`, `NaN`.
    fn unsigned_number(&mut self) -> R<f64> {
        let start = self.pos;
        for word in ["inf", "NaN"] {
            if self.looking_at(word) && !self.line.chars.get(self.pos + 3).copied().is_some_and(is_name_char) {
                self.pos += 3;
                return Ok(if word == "inf" { f64::INFINITY } else { f64::NAN });
            }
        }
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return self.err("expected a number");
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.pos += 1;
        }
        if self.peek().is_some_and(|c| c == 'e' || c == 'E') {
            self.pos += 1;
            if self.peek().is_some_and(|c| c == '-' || c == '+') {
                self.pos += 1;
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        let text: String = self.line.chars[start..self.pos].iter().collect();
        text.parse().or_else(|_| self.err_at(start, format!("`{text}` is not a number")))
    }

    fn number(&mut self) -> R<f64> {
        if self.eat("-") {
            return Ok(-self.unsigned_number()?);
        }
        self.unsigned_number()
    }

    /// `[a, b, ...]` of items.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect("[")?;
        let mut out = Vec::new();
        if self.eat("]") {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.eat("]") {
                return Ok(out);
            }
            self.expect(", ")?;
        }
    }
}

struct Parser<'a> {
    lines: &'a [Line],
    at: usize,
}

/// What names resolve to inside one loop kernel.
struct KernelScope<'a> {
    bufs: &'a [Buffer],
    loops: Vec<LoopInfo>,
    vars: Vec<String>,
    /// Enclosing loops, innermost last.
    open: Vec<LoopId>,
    /// How deeply the expression being parsed nests.
    depth: std::cell::Cell<usize>,
}

impl<'a> Parser<'a> {
    fn line(&self) -> Option<&'a Line> {
        self.lines.get(self.at)
    }

    fn skip_blank(&mut self) {
        while self.line().is_some_and(|l| l.is_blank()) {
            self.at += 1;
        }
    }

    /// An error at the end of the text.
    fn eof<T>(&self, message: &str) -> R<T> {
        let line = self.lines.len().max(1);
        let col = self.lines.last().map_or(0, |l| l.chars.len()) + 1;
        Err(ParseError { line, col, message: message.to_string() })
    }

    fn program(mut self) -> R<Program> {
        self.skip_blank();
        let Some(line) = self.line() else { return self.eof("expected `program NAME (DTYPE)`") };
        let mut c = Cur::new(line);
        c.expect("program ")?;
        let name = c.until_last(" (", "a program name")?;
        let dt_at = c.pos;
        let dt = c.name("a dtype")?;
        let dtype = DType::from_name(&dt).map_or_else(|| c.err_at(dt_at, format!("unknown dtype `{dt}`")), Ok)?;
        c.expect(")")?;
        c.end()?;
        self.at += 1;
        let mut bufs: Vec<Buffer> = Vec::new();
        while let Some(line) = self.line().filter(|l| l.chars.starts_with(&[' ', ' ', 'b', 'u', 'f', ' '])) {
            bufs.push(buffer(line, &bufs)?);
            self.at += 1;
        }
        let mut slots = Vec::new();
        if let Some(line) = self.line().filter(|l| l.chars.starts_with(&[' ', ' ', 's', 'l', 'o', 't', 's'])) {
            let mut c = Cur::new(line);
            c.expect("  slots ")?;
            slots = c.list(|c| c.uint())?;
            c.expect(" elements (")?;
            let at = c.pos;
            let bytes = c.uint()?;
            let want = slots.iter().sum::<usize>().saturating_mul(dtype.size_of());
            if bytes != want {
                return c.err_at(at, format!("the slots hold {want} bytes, not {bytes}"));
            }
            c.expect(" bytes)")?;
            c.end()?;
            self.at += 1;
        }
        let inputs = arguments(&self, &bufs, |k| if let BufKind::Input(i) = k { Some(*i) } else { None }, "input")?;
        let outputs = arguments(&self, &bufs, |k| if let BufKind::Output(i) = k { Some(*i) } else { None }, "output")?;
        let indices = arguments(&self, &bufs, |k| if let BufKind::Index(i) = k { Some(*i) } else { None }, "index")?;
        let mut kernels = Vec::new();
        let mut tiles: Vec<TileGroup> = Vec::new();
        loop {
            self.skip_blank();
            let Some(line) = self.line() else { break };
            let mut c = Cur::new(line);
            if c.looking_at("tiles ") {
                let g = tile_group(&mut c, kernels.len(), self.lines.len() - self.at)?;
                if tiles.last().is_some_and(|t: &TileGroup| t.last >= g.first) {
                    return c.err_at(0, "tile groups overlap");
                }
                self.at += 1;
                let mut g = g;
                g.stream = self.stream(&bufs)?;
                tiles.push(g);
                let Some(line) = self.line() else { return self.eof("a tile group must be followed by its first kernel") };
                c = Cur::new(line);
                if !c.looking_at("kernel ") {
                    return c.err("a tile group must be followed by its first kernel");
                }
            }
            c.expect("kernel ")?;
            let at = c.pos;
            let k = c.uint()?;
            if k != kernels.len() {
                return c.err_at(at, format!("expected kernel {}, found kernel {k}", kernels.len()));
            }
            if c.eat(" gemm ") {
                kernels.push(Kernel::Gemm(self.gemm(c, &bufs)?));
            } else if c.eat(" loops ") {
                kernels.push(Kernel::Loops(self.loop_kernel(c, &bufs)?));
            } else {
                return c.err("expected `gemm` or `loops`");
            }
        }
        let n = kernels.len();
        if let Some(g) = tiles.iter().find(|g| g.last >= n) {
            return self.eof(&format!("tile group of kernels {}..={} but the program has {n} kernels", g.first, g.last));
        }
        let mut p = Program { name, dtype, bufs, slots, inputs, indices, outputs, kernels, tiles };
        // A group's tile buffers are those its kernels use (the verifier checks the kinds).
        for g in 0..p.tiles.len() {
            let mut local = Vec::new();
            for k in p.tiles[g].first..=p.tiles[g].last {
                for b in p.kernels[k].buffers_used() {
                    if matches!(p.buf(b).kind, BufKind::Tile { .. }) && !local.contains(&b) {
                        local.push(b);
                    }
                }
            }
            p.tiles[g].local = local;
        }
        Ok(p)
    }

    /// The stream lines under a tile group's line, if any: `stream` lines (one per axis),
    /// then `shift` lines, the `scores` line and `mask` lines.
    fn stream(&mut self, bufs: &[Buffer]) -> R<Option<Stream>> {
        let starts = |p: &Self, s: &str| p.line().is_some_and(|l| Cur::new(l).looking_at(s));
        if !starts(self, "  stream ") {
            for word in ["  shift ", "  scores ", "  mask "] {
                if let Some(l) = self.line().filter(|_| starts(self, word)) {
                    return Cur::new(l).err(format!("`{}` needs a `stream` line before it", word.trim()));
                }
            }
            return Ok(None);
        }
        let mut axes: Vec<StreamAxis> = Vec::new();
        while let Some(line) = self.line().filter(|_| starts(self, "  stream ")) {
            let mut c = Cur::new(line);
            c.expect("  stream ")?;
            let at = c.pos;
            let name = c.name("a key name")?;
            if axes.iter().any(|a| a.name == name) {
                return c.err_at(at, format!("key `{name}` streams twice"));
            }
            c.expect(" of ")?;
            let extent = c.uint()?;
            c.expect(" in blocks of ")?;
            let block = c.uint()?;
            c.expect(", kernels ")?;
            let a = c.uint()?;
            c.expect("..=")?;
            let b = c.uint()?;
            c.end()?;
            axes.push(StreamAxis { name, extent, block, kernels: (a, b) });
            self.at += 1;
        }
        let axis = |c: &mut Cur| -> R<usize> {
            let at = c.pos;
            let name = c.name("a key name")?;
            axes.iter().position(|a| a.name == name).map_or_else(|| c.err_at(at, format!("no stream key is named `{name}`")), Ok)
        };
        let mut shifts = Vec::new();
        while let Some(line) = self.line().filter(|_| starts(self, "  shift ")) {
            let mut c = Cur::new(line);
            c.expect("  shift ")?;
            let buf = buf_ref(&mut c, bufs)?;
            c.expect(" by ")?;
            let axis = axis(&mut c)?;
            c.expect(" * ")?;
            let stride = c.int()?;
            c.end()?;
            shifts.push(Shift { buf, axis, stride });
            self.at += 1;
        }
        let Some(line) = self.line().filter(|_| starts(self, "  scores ")) else {
            return match self.line() {
                Some(l) => Cur::new(l).err("expected the stream's `scores` line"),
                None => self.eof("expected the stream's `scores` line"),
            };
        };
        let mut c = Cur::new(line);
        c.expect("  scores ")?;
        let scores = buf_ref(&mut c, bufs)?;
        c.expect(" filled after kernel ")?;
        let fill_after = c.uint()?;
        c.expect(", key strides ")?;
        let at = c.pos;
        let score_strides = c.list(|c| c.int())?;
        if score_strides.len() != axes.len() {
            return c.err_at(at, format!("{} key strides for {} stream keys", score_strides.len(), axes.len()));
        }
        c.end()?;
        self.at += 1;
        let names: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
        let mut row: Option<String> = None;
        let mut mask = Vec::new();
        while let Some(line) = self.line().filter(|_| starts(self, "  mask ")) {
            let mut c = Cur::new(line);
            c.expect("  mask ")?;
            mask.push(mask_cmp(&mut c, &names, &mut row)?);
            c.end()?;
            self.at += 1;
        }
        Ok(Some(Stream { axes, shifts, scores, fill_after, score_strides, mask }))
    }

    fn gemm(&mut self, mut c: Cur, bufs: &[Buffer]) -> R<Gemm> {
        c.expect("(step ")?;
        let step = c.uint()?;
        c.expect(")")?;
        // The roles are free text; a trailing space may have been trimmed.
        let roles = if c.at_end() {
            String::new()
        } else {
            c.expect(" ")?;
            c.rest()
        };
        self.at += 1;
        let mut c = self.body_line("the GEMM's operands")?;
        c.expect("  ")?;
        let cb = buf_ref(&mut c, bufs)?;
        c.expect("[m, n] ")?;
        let accumulate = c.eat("+");
        c.expect("= ")?;
        let alpha = c.number()?;
        c.expect(" * ")?;
        let a = buf_ref(&mut c, bufs)?;
        c.expect("[m, k] ")?;
        let b = buf_ref(&mut c, bufs)?;
        c.expect("[k, n]  m = ")?;
        let m = c.uint()?;
        c.expect(", n = ")?;
        let n = c.uint()?;
        c.expect(", k = ")?;
        let k = c.uint()?;
        c.end()?;
        self.at += 1;
        let mut c = self.body_line("the GEMM's strides")?;
        let pair = |c: &mut Cur| -> R<[isize; 2]> {
            let v = c.list(|c| c.int())?;
            match v.as_slice() {
                [x, y] => Ok([*x as isize, *y as isize]),
                _ => c.err("expected two strides"),
            }
        };
        c.expect("  strides  a ")?;
        let a_strides = pair(&mut c)?;
        c.expect("  b ")?;
        let b_strides = pair(&mut c)?;
        c.expect("  c ")?;
        let c_strides = pair(&mut c)?;
        c.end()?;
        self.at += 1;
        let mut outer = Vec::new();
        while let Some(line) = self.line().filter(|l| l.indent() == 2) {
            let mut c = Cur::new(line);
            c.expect("  ")?;
            let sum = if c.eat("sum ") {
                true
            } else {
                c.expect("loop ")?;
                false
            };
            let extent = c.uint()?;
            c.expect("  strides a ")?;
            let stride_a = c.int()? as isize;
            c.expect(", b ")?;
            let stride_b = c.int()? as isize;
            c.expect(", c ")?;
            let at = c.pos;
            let stride_c = c.int()? as isize;
            c.end()?;
            if sum != (stride_c == 0) {
                return c.err_at(at, "a `sum` loop has C stride 0 and a `loop` does not");
            }
            outer.push(GemmLoop { extent, stride_a, stride_b, stride_c });
            self.at += 1;
        }
        Ok(Gemm { a, b, c: cb, m, n, k, a_strides, b_strides, c_strides, outer, alpha, accumulate, step, roles })
    }

    /// The next line, which must exist and be indented.
    fn body_line(&self, what: &str) -> R<Cur<'a>> {
        match self.line() {
            Some(l) if l.indent() >= 2 => Ok(Cur::new(l)),
            Some(l) => Cur::new(l).err(format!("expected {what}")),
            None => self.eof(&format!("expected {what}")),
        }
    }

    fn loop_kernel(&mut self, mut c: Cur, bufs: &[Buffer]) -> R<LoopKernel> {
        let name = c.until_last(" (steps ", "a kernel name")?;
        let mut steps = Vec::new();
        if !c.eat(")") {
            loop {
                steps.push(c.uint()?);
                if c.eat(")") {
                    break;
                }
                c.expect(", ")?;
            }
        }
        c.end()?;
        self.at += 1;
        let mut s = KernelScope { bufs, loops: Vec::new(), vars: Vec::new(), open: Vec::new(), depth: Default::default() };
        let body = self.block(&mut s, 1)?;
        Ok(LoopKernel { name, steps, loops: s.loops, vars: s.vars, body })
    }

    /// Statements at `depth` (indented 2·depth), up to the `}` that closes the block (not
    /// consumed) or, at depth 1, the end of the kernel.
    fn block(&mut self, s: &mut KernelScope, depth: usize) -> R<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            let Some(line) = self.line() else {
                return if depth == 1 { Ok(out) } else { self.eof("expected `}`") };
            };
            let indent = line.indent();
            if depth == 1 && (line.is_blank() || indent == 0) {
                return Ok(out);
            }
            let mut c = Cur::new(line);
            if indent == 2 * (depth - 1) && c.rest().trim_start() == "}" && depth > 1 {
                return Ok(out);
            }
            if depth > MAX_DEPTH {
                return c.err(format!("loops nest more than {MAX_DEPTH} deep"));
            }
            if indent != 2 * depth {
                return c.err_at(indent, format!("expected a statement indented {} spaces", 2 * depth));
            }
            c.pos = indent;
            let parallel = c.eat("parallel ");
            if parallel || c.looking_at("for ") {
                c.expect("for ")?;
                let name = c.name("a loop name")?;
                c.expect(" in 0..")?;
                let extent = c.uint()?;
                c.expect(" {")?;
                c.end()?;
                self.at += 1;
                let id = LoopId(s.loops.len() as u32);
                s.loops.push(LoopInfo { name, extent });
                s.open.push(id);
                let body = self.block(s, depth + 1)?;
                s.open.pop();
                self.at += 1;
                out.push(Stmt::For { id, extent, parallel, body });
                continue;
            }
            let at = c.pos;
            let name = c.name("a statement")?;
            let st = if c.eat("[") {
                let buf = s.buf(&c, at, &name)?;
                let index = s.affine(&mut c)?;
                c.expect("] = ")?;
                Stmt::Store { buf, index, value: s.expr(&mut c)? }
            } else if c.eat(" = ") {
                let value = s.expr(&mut c)?;
                let var = match s.vars.iter().position(|v| *v == name) {
                    Some(v) => VarId(v as u32),
                    None => {
                        s.vars.push(name);
                        VarId(s.vars.len() as u32 - 1)
                    }
                };
                Stmt::Let { var, value }
            } else {
                let op = if c.eat(" += ") {
                    Accum::Sum
                } else if c.eat(" max= ") {
                    Accum::Max
                } else if c.eat(" min= ") {
                    Accum::Min
                } else {
                    return c.err("expected `=`, `+=`, `max=`, `min=` or `[`");
                };
                let var = s.var(&c, at, &name)?;
                Stmt::Update { var, op, value: s.expr(&mut c)? }
            };
            c.end()?;
            self.at += 1;
            out.push(st);
        }
    }
}

/// The argument (or result) list from the buffer kinds: position i holds the buffer of
/// kind `input i`, each position exactly once.
fn arguments(p: &Parser<'_>, bufs: &[Buffer], of: impl Fn(&BufKind) -> Option<usize>, what: &str) -> R<Vec<BufId>> {
    let listed: Vec<(usize, usize)> = bufs.iter().enumerate().filter_map(|(b, x)| of(&x.kind).map(|i| (i, b))).collect();
    let mut out = Vec::new();
    for i in 0..listed.len() {
        match listed.iter().filter(|x| x.0 == i).map(|x| x.1).collect::<Vec<_>>().as_slice() {
            [b] => out.push(BufId(*b as u32)),
            _ => {
                let line = p.lines.get(p.at.saturating_sub(1)).map_or(1, |l| l.no);
                return Err(ParseError { line, col: 1, message: format!("the buffers are not {what}s 0..{} once each", listed.len()) });
            }
        }
    }
    Ok(out)
}

/// `  buf bK NAME[SHAPE]  KIND`.
fn buffer(line: &Line, bufs: &[Buffer]) -> R<Buffer> {
    let mut c = Cur::new(line);
    c.expect("  buf b")?;
    let at = c.pos;
    let k = c.uint()?;
    if k != bufs.len() {
        return c.err_at(at, format!("expected buffer b{}, found b{k}", bufs.len()));
    }
    c.expect(" ")?;
    let at = c.pos;
    let name = c.name("a buffer name")?;
    if bufs.iter().any(|b| b.name == name) {
        return c.err_at(at, format!("buffer `{name}` is declared twice"));
    }
    let at = c.pos;
    let shape = c.list(|c| c.uint())?;
    if shape.iter().try_fold(1u64, |a, &x| a.checked_mul(x as u64)).is_none_or(|n| n > MAX_INT) {
        return c.err_at(at, "the buffer has more than 2^40 elements");
    }
    c.expect("  ")?;
    let kind = if c.eat("input ") {
        BufKind::Input(c.uint()?)
    } else if c.eat("index ") {
        BufKind::Index(c.uint()?)
    } else if c.eat("output ") {
        BufKind::Output(c.uint()?)
    } else if c.eat("temp, slot ") {
        BufKind::Temp { slot: c.uint()? }
    } else if c.eat("temp") {
        BufKind::Temp { slot: 0 }
    } else if c.eat("const ") {
        BufKind::Const(std::sync::Arc::new(c.list(|c| c.number())?))
    } else if c.eat("scratch, per thread") {
        BufKind::Scratch
    } else if c.eat("tile rows of ") {
        let row = c.uint()?;
        c.expect(", per thread")?;
        BufKind::Tile { row }
    } else {
        return c.err(
            "expected a buffer kind (`input N`, `index N`, `output N`, `temp`, `const [...]`, `scratch, per thread`, `tile rows of N, per thread`)",
        );
    };
    c.end()?;
    Ok(Buffer { name, kind, shape })
}

/// `tiles of T rows of E, kernels F..=L (kernel K slices m, ...)`, before kernel `next`,
/// with `lines` lines left in the text.
fn tile_group(c: &mut Cur, next: usize, lines: usize) -> R<TileGroup> {
    c.expect("tiles of ")?;
    let at = c.pos;
    let tile = c.uint()?;
    if tile == 0 {
        return c.err_at(at, "a tile has at least one row");
    }
    c.expect(" rows of ")?;
    let extent = c.uint()?;
    c.expect(", kernels ")?;
    let at = c.pos;
    let first = c.uint()?;
    if first != next {
        return c.err_at(at, format!("the group must start at the kernel after it, {next}"));
    }
    c.expect("..=")?;
    let at = c.pos;
    let last = c.uint()?;
    if last < first {
        return c.err_at(at, "the group's last kernel is before its first");
    }
    // Every kernel takes a line at least.
    if last - first >= lines {
        return c.err_at(at, format!("the program does not have kernel {last}"));
    }
    c.expect(" (")?;
    let mut roles = vec![None; last - first + 1];
    let mut factors = vec![1; roles.len()];
    if !c.eat(")") {
        loop {
            c.expect("kernel ")?;
            let at = c.pos;
            let k = c.uint()?;
            if !(first..=last).contains(&k) {
                return c.err_at(at, format!("kernel {k} is not in the group"));
            }
            c.expect(" slices ")?;
            roles[k - first] = Some(if c.eat("m") {
                TileRole::M
            } else {
                c.expect("n")?;
                TileRole::N
            });
            if c.eat(" x") {
                let at = c.pos;
                factors[k - first] = c.uint()?;
                if factors[k - first] < 2 {
                    return c.err_at(at, "a factor is at least 2 (1 is not printed)");
                }
            }
            if c.eat(")") {
                break;
            }
            c.expect(", ")?;
        }
    }
    c.end()?;
    Ok(TileGroup { first, last, extent, tile, roles, factors, local: Vec::new(), stream: None })
}

/// A mask comparison as `print.rs::mask_text` writes it: `2*j - i + 1 <= 0`. Names are
/// stream keys or the row (any other name, the same on every line).
fn mask_cmp(c: &mut Cur, keys: &[String], row: &mut Option<String>) -> R<MaskCmp> {
    let mut m = MaskCmp { op: CmpOp::Le, row: 0, keys: vec![0; keys.len()], constant: 0 };
    let mut negative = c.eat("-");
    loop {
        let at = c.pos;
        let (coef, name) = if c.peek().is_some_and(|x| x.is_ascii_digit()) {
            let v = mask_int(c)?;
            if c.eat("*") {
                (v, Some(c.name("a key or row name")?))
            } else {
                (v, None)
            }
        } else {
            (1, Some(c.name("a key or row name, or a number")?))
        };
        let coef = if negative { -coef } else { coef };
        let slot = match name {
            None => &mut m.constant,
            Some(n) => match keys.iter().position(|k| *k == n) {
                Some(k) => &mut m.keys[k],
                None => {
                    if row.as_ref().is_some_and(|r| *r != n) {
                        return c.err_at(at, format!("`{n}` is not a stream key, and the row is `{}`", row.as_deref().unwrap_or("")));
                    }
                    *row = Some(n);
                    &mut m.row
                }
            },
        };
        *slot = slot.checked_add(coef).map_or_else(|| c.err_at(at, "the coefficient overflows"), Ok)?;
        if c.eat(" + ") {
            negative = false;
        } else if c.eat(" - ") {
            negative = true;
        } else {
            break;
        }
    }
    c.expect(" ")?;
    let at = c.pos;
    m.op = match CMPS.iter().find(|op| c.eat(op.symbol())) {
        Some(op) => *op,
        None => return c.err_at(at, "expected a comparison"),
    };
    c.expect(" 0")?;
    Ok(m)
}

/// A non-negative integer up to `i64::MAX` (mask coefficients may exceed sizes' 2^40).
fn mask_int(c: &mut Cur) -> R<i64> {
    let at = c.pos;
    let d = c.digits()?;
    d.parse::<i64>().map_or_else(|_| c.err_at(at, format!("{d} is too large")), Ok)
}

fn buf_ref(c: &mut Cur, bufs: &[Buffer]) -> R<BufId> {
    let at = c.pos;
    let name = c.name("a buffer name")?;
    match bufs.iter().position(|b| b.name == name) {
        Some(b) => Ok(BufId(b as u32)),
        None => c.err_at(at, format!("no buffer is named `{name}`")),
    }
}

const UNARY: &[UnOp] =
    &[UnOp::Exp, UnOp::Log, UnOp::Sqrt, UnOp::Rsqrt, UnOp::Tanh, UnOp::Sigmoid, UnOp::Relu, UnOp::Abs, UnOp::Sin, UnOp::Cos];
const CALLS: &[BinOp] = &[BinOp::Max, BinOp::Min, BinOp::Pow, BinOp::Lmul(0)];
const INFIX: &[BinOp] = &[BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div];
const CMPS: &[CmpOp] = &[CmpOp::Le, CmpOp::Ge, CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Gt];

impl KernelScope<'_> {
    fn buf(&self, c: &Cur, at: usize, name: &str) -> R<BufId> {
        match self.bufs.iter().position(|b| b.name == name) {
            Some(b) => Ok(BufId(b as u32)),
            None => c.err_at(at, format!("no buffer is named `{name}`")),
        }
    }

    fn var(&self, c: &Cur, at: usize, name: &str) -> R<VarId> {
        match self.vars.iter().position(|v| v == name) {
            Some(v) => Ok(VarId(v as u32)),
            None => c.err_at(at, format!("variable `{name}` is used before any `{name} = ...`")),
        }
    }

    fn loop_named(&self, c: &Cur, at: usize, name: &str) -> R<LoopId> {
        match self.open.iter().rev().find(|l| self.loops[l.index()].name == name) {
            Some(l) => Ok(*l),
            None => c.err_at(at, format!("no enclosing loop is named `{name}`")),
        }
    }

    /// `t + t*s + ... + offset`, the offset last and only when it is not 0 (or alone).
    fn affine(&self, c: &mut Cur) -> R<Affine> {
        let mut a = Affine::default();
        loop {
            if c.peek().is_some_and(|x| x.is_ascii_digit() || x == '-') {
                a.offset = c.int()?;
                return Ok(a);
            }
            let at = c.pos;
            let name = c.name("a loop name or an offset")?;
            let l = self.loop_named(c, at, &name)?;
            let stride = if c.eat("*") { c.int()? } else { 1 };
            a.terms.push((l, stride));
            if !c.eat(" + ") {
                return Ok(a);
            }
        }
    }

    /// A load's address: an affine one, or a gathered one with `@INDEX[at]*stride<extent`
    /// terms after the loop terms (the offset stays last).
    fn gathered(&self, c: &mut Cur) -> R<(Affine, Vec<Indirect>)> {
        let mut a = Affine::default();
        let mut ind = Vec::new();
        loop {
            if c.peek().is_some_and(|x| x.is_ascii_digit() || x == '-') {
                a.offset = c.int()?;
                return Ok((a, ind));
            }
            if c.eat("@") {
                let at = c.pos;
                let name = c.name("an index buffer")?;
                let index = self.buf(c, at, &name)?;
                c.expect("[")?;
                let addr = self.affine(c)?;
                c.expect("]*")?;
                let stride = c.int()?;
                c.expect("<")?;
                let extent = c.uint()?;
                ind.push(Indirect { index, at: addr, stride, extent });
            } else {
                if !ind.is_empty() {
                    return c.err("loop terms come before the gathered ones");
                }
                let at = c.pos;
                let name = c.name("a loop name, an offset or `@`")?;
                let l = self.loop_named(c, at, &name)?;
                let stride = if c.eat("*") { c.int()? } else { 1 };
                a.terms.push((l, stride));
            }
            if !c.eat(" + ") {
                return Ok((a, ind));
            }
        }
    }

    /// Enters one level of nesting; `leave` undoes it.
    fn enter(&self, c: &Cur) -> R<()> {
        if self.depth.get() >= MAX_DEPTH {
            return c.err(format!("the expression nests more than {MAX_DEPTH} deep"));
        }
        self.depth.set(self.depth.get() + 1);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get() - 1);
    }

    fn expr(&self, c: &mut Cur) -> R<Expr> {
        self.enter(c)?;
        let r = self.expr_inner(c);
        self.leave();
        r
    }

    fn expr_inner(&self, c: &mut Cur) -> R<Expr> {
        let a = self.atom(c)?;
        for &op in INFIX {
            if c.eat(&format!(" {} ", op.name())) {
                let b = self.atom(c)?;
                return Ok(Expr::bin(op, a, b));
            }
        }
        Ok(a)
    }

    fn atom(&self, c: &mut Cur) -> R<Expr> {
        let at = c.pos;
        if c.eat("(") {
            let e = self.expr(c)?;
            c.expect(")")?;
            // The printer parenthesises only infix operations and negations, never a
            // constant: `(-1.0)` is the negation of 1.
            return Ok(match e {
                Expr::Const(v) if v.is_sign_negative() => Expr::un(UnOp::Neg, Expr::Const(-v)),
                e => e,
            });
        }
        if c.eat("-") {
            let literal = c.peek().is_some_and(|x| x.is_ascii_digit())
                || (c.looking_at("inf") && !c.line.chars.get(c.pos + 3).copied().is_some_and(is_name_char));
            if literal {
                return Ok(Expr::Const(-c.unsigned_number()?));
            }
            self.enter(c)?;
            let a = self.atom(c);
            self.leave();
            return Ok(Expr::un(UnOp::Neg, a?));
        }
        if c.peek().is_some_and(|x| x.is_ascii_digit()) {
            return Ok(Expr::Const(c.unsigned_number()?));
        }
        if c.eat("#") {
            let at = c.pos;
            let name = c.name("a loop name")?;
            return Ok(Expr::Index(self.loop_named(c, at, &name)?));
        }
        let name = c.name("an expression")?;
        if c.eat("(") {
            let e = if name == "select" {
                let p = self.pred(c)?;
                c.expect(", ")?;
                let a = self.expr(c)?;
                c.expect(", ")?;
                let b = self.expr(c)?;
                Expr::Select(Box::new(p), Box::new(a), Box::new(b))
            } else if let Some(&op) = UNARY.iter().find(|op| op.name() == name) {
                Expr::un(op, self.expr(c)?)
            } else if let Some(&op) = CALLS.iter().find(|op| op.name() == name) {
                let a = self.expr(c)?;
                c.expect(", ")?;
                let b = self.expr(c)?;
                if op == BinOp::Lmul(0) && c.eat(", ") {
                    let at = c.pos;
                    match c.int()? {
                        m @ 1..=52 => Expr::bin(BinOp::Lmul(m as u8), a, b),
                        m => return c.err_at(at, format!("lmul keeps 1 to 52 mantissa bits, not {m}")),
                    }
                } else {
                    Expr::bin(op, a, b)
                }
            } else {
                return c.err_at(at, format!("unknown function `{name}`"));
            };
            c.expect(")")?;
            return Ok(e);
        }
        if c.eat("[") {
            let b = self.buf(c, at, &name)?;
            let (a, ind) = self.gathered(c)?;
            c.expect("]")?;
            return Ok(if ind.is_empty() { Expr::Load(b, a) } else { Expr::Gather(b, a, ind) });
        }
        if name == "inf" || name == "NaN" {
            return Ok(Expr::Const(if name == "inf" { f64::INFINITY } else { f64::NAN }));
        }
        Ok(Expr::Var(self.var(c, at, &name)?))
    }

    /// A condition: `!(p)`, `a < b`, or `(p) && (q) ...` / `(p) || (q) ...`; an empty
    /// conjunction prints as nothing.
    fn pred(&self, c: &mut Cur) -> R<Pred> {
        self.enter(c)?;
        let r = self.pred_inner(c);
        self.leave();
        r
    }

    fn pred_inner(&self, c: &mut Cur) -> R<Pred> {
        if c.eat("!(") {
            let p = self.pred(c)?;
            c.expect(")")?;
            return Ok(Pred::Not(Box::new(p)));
        }
        if c.peek() == Some(',') {
            return Ok(Pred::And(Vec::new()));
        }
        let start = c.pos;
        // A comparison whose left side is parenthesised also starts with `(`: try it
        // first, then a list of parenthesised conditions.
        let cmp = self.atom(c).and_then(|a| {
            for &op in CMPS {
                if c.eat(&format!(" {} ", op.symbol())) {
                    return Ok(Pred::Cmp(op, a, self.atom(c)?));
                }
            }
            c.err("expected a comparison")
        });
        match cmp {
            Ok(p) => return Ok(p),
            Err(e) if c.line.chars.get(start) != Some(&'(') => return Err(e),
            Err(_) => c.pos = start,
        }
        let mut ps = Vec::new();
        let mut or = None;
        loop {
            c.expect("(")?;
            ps.push(self.pred(c)?);
            c.expect(")")?;
            let at = c.pos;
            let this = if c.eat(" && ") {
                false
            } else if c.eat(" || ") {
                true
            } else {
                break;
            };
            if or.is_some_and(|o| o != this) {
                return c.err_at(at, "`&&` and `||` mix without parentheses");
            }
            or = Some(this);
        }
        Ok(if or == Some(true) { Pred::Or(ps) } else { Pred::And(ps) })
    }
}
