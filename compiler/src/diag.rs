//! Source files, spans and diagnostics.
//!
//! Every user error is a [`Diagnostic`] value with spans into a [`SourceMap`]; rendering
//! goes through miette so that messages look like rustc's. Internal invariant failures
//! are not diagnostics: they are [`crate::Error::Internal`] ("this is a bug").

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end as u32 }
    }

    /// The smallest span covering both (same file assumed; `self`'s file wins).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// One source text with the name it is shown under (a path, `<einsum>`, `std/attention.tsr`).
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// All source files of one compilation.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile { name: name.into(), text: text.into() });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn find(&self, name: &str) -> Option<FileId> {
        self.files.iter().position(|f| f.name == name).map(|i| FileId(i as u32))
    }

    /// The text a span covers ("" for a span outside its file).
    pub fn snippet(&self, span: Span) -> &str {
        let text = &self.get(span.file).text;
        text.get(span.start as usize..span.end as usize).unwrap_or("")
    }

    /// 1-based line and column of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let text = &self.get(span.file).text;
        let mut pos = (span.start as usize).min(text.len());
        while !text.is_char_boundary(pos) {
            pos -= 1;
        }
        let upto = &text[..pos];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A span with a message. The first label of a diagnostic is the primary one.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// A user-facing error or warning.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable identifier, e.g. `check::index-range`; every kind has a snapshot test.
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<Label>,
    /// A one-line hint on how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    pub fn label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders as miette's graphical report. Labels in a file other than the primary
    /// label's are listed as notes with their line and column.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let mut help = self.help.clone();
        let file = self.labels.first().map(|l| l.span.file);
        let mut labels = Vec::new();
        for l in &self.labels {
            if Some(l.span.file) == file {
                labels.push(LabeledSpan::new(
                    Some(l.message.clone()),
                    l.span.start as usize,
                    l.span.len(),
                ));
            } else {
                let (line, col) = sources.line_col(l.span);
                let note =
                    format!("{} (at {}:{}:{})", l.message, sources.get(l.span.file).name, line, col);
                help = Some(match help {
                    Some(h) => format!("{note}\n{h}"),
                    None => note,
                });
            }
        }
        let src = file.map(|f| {
            let f = sources.get(f);
            NamedSource::new(f.name.clone(), f.text.clone())
        });
        // miette lays out whole source lines and panics on very long ones, so those
        // (and any other renderer failure) get the plain form instead.
        let long_line = self.labels.iter().any(|l| line_len_at(sources, l.span) > MAX_RENDERED_LINE);
        if !long_line {
            let report = Report { diag: self, labels, help: help.clone(), src };
            let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
            let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
            let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut out = String::new();
                handler.render_report(&mut out, &report).map(|_| out)
            }));
            if let Ok(Ok(out)) = rendered {
                return out;
            }
        }
        self.render_plain(sources, help.as_deref())
    }

    /// A rendering without source excerpts: location, labels and help as text lines.
    fn render_plain(&self, sources: &SourceMap, help: Option<&str>) -> String {
        let kind = if self.is_error() { "error" } else { "warning" };
        let mut out = format!("{kind}[{}]: {}\n", self.code, self.message);
        for l in &self.labels {
            let (line, col) = sources.line_col(l.span);
            out.push_str(&format!("  --> {}:{line}:{col}: {}\n", sources.get(l.span.file).name, l.message));
        }
        if let Some(h) = help {
            out.push_str(&format!("  help: {h}\n"));
        }
        out
    }
}

/// Longest source line shown with an excerpt; longer ones are reported by position only.
const MAX_RENDERED_LINE: usize = 1000;

fn line_len_at(sources: &SourceMap, span: Span) -> usize {
    let text = &sources.get(span.file).text;
    let mut pos = (span.start as usize).min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let start = text[..pos].rfind('\n').map_or(0, |p| p + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |p| pos + p);
    end - start
}

/// Renders several diagnostics, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    diags.iter().map(|d| d.render(sources, color)).collect::<Vec<_>>().join("\n")
}

struct Report<'a> {
    diag: &'a Diagnostic,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    src: Option<NamedSource<String>>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
}
