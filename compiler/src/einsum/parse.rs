//! Splitting a subscripts string into terms, the way numpy's C parser does.
//!
//! numpy ends the input terms at the first `-`, which must start `->`; spaces are
//! skipped inside terms but not inside `->` or `...`. A label is any character that
//! is not `,`, `.`, `-`, `>`, whitespace or a control character: opt_einsum's rule
//! (its `get_symbol` hands out `À`, `×`, `÷` and more past the 52 ASCII letters), where
//! numpy takes only ASCII letters. Other whitespace and control characters are errors.

use crate::diag::{Diagnostic, FileId, Span};

/// One element of a term: a label or an ellipsis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Item {
    Label(char, Span),
    Ellipsis(Span),
}

/// The subscripts of one operand or of the output.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Term {
    /// The term's text, spaces included (empty for a scalar).
    pub span: Span,
    pub items: Vec<Item>,
}

impl Term {
    pub fn labels(&self) -> impl Iterator<Item = (char, Span)> + '_ {
        self.items.iter().filter_map(|it| match *it {
            Item::Label(c, s) => Some((c, s)),
            Item::Ellipsis(_) => None,
        })
    }

    pub fn ellipsis(&self) -> Option<Span> {
        self.items.iter().find_map(|it| match *it {
            Item::Ellipsis(s) => Some(s),
            Item::Label(..) => None,
        })
    }
}

/// A parsed subscripts string.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Spec {
    pub inputs: Vec<Term>,
    /// `None` when the spec has no `->`: the output is implicit.
    pub output: Option<Term>,
}

/// Which term is being parsed, for messages.
#[derive(Clone, Copy)]
enum Role {
    Operand(usize),
    Output,
}

impl Role {
    fn describe(self) -> String {
        match self {
            Role::Operand(k) => format!("the term of operand {k}"),
            Role::Output => "the output".to_string(),
        }
    }
}

pub(super) fn parse(spec: &str, file: FileId) -> Result<Spec, Diagnostic> {
    let span = |a: usize, b: usize| Span::new(file, a, b);
    // Like numpy, the first `-` ends the inputs and must be the start of `->`.
    let (inputs_end, output_start) = match spec.find('-') {
        None => (spec.len(), None),
        Some(p) if spec[p + 1..].starts_with('>') => (p, Some(p + 2)),
        Some(p) => {
            return Err(Diagnostic::error("einsum::arrow", "`-` is not part of an arrow `->`")
                .label(span(p, p + 1), "expected `->` here")
                .help("write the output after `->`, with nothing between `-` and `>`"));
        }
    };
    if let Some(o) = output_start {
        if let Some(q) = spec[o..].find("->") {
            return Err(Diagnostic::error("einsum::arrow", "the spec has more than one `->`")
                .label(span(o + q, o + q + 2), "second `->`")
                .label(span(inputs_end, o), "first `->`")
                .help("an einsum spec has one output: `inputs->output`"));
        }
    }
    let mut inputs = Vec::new();
    let mut start = 0;
    for (k, text) in spec[..inputs_end].split(',').enumerate() {
        inputs.push(parse_term(text, start, file, Role::Operand(k))?);
        start += text.len() + 1;
    }
    let output = match output_start {
        Some(o) => Some(parse_term(&spec[o..], o, file, Role::Output)?),
        None => None,
    };
    Ok(Spec { inputs, output })
}

/// Whether `c` can be an einsum label: opt_einsum's rule, less the characters that
/// cannot be seen (whitespace, which numpy and we skip or reject, and control characters).
pub fn is_label(c: char) -> bool {
    !matches!(c, ',' | '.' | '-' | '>') && !c.is_whitespace() && !c.is_control()
}

/// Parses one term whose text starts at byte `base` of the spec.
fn parse_term(text: &str, base: usize, file: FileId, role: Role) -> Result<Term, Diagnostic> {
    let span = |a: usize, b: usize| Span::new(file, base + a, base + b);
    let mut items = Vec::new();
    let mut ellipsis: Option<Span> = None;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let width = c.len_utf8();
        if c == ' ' {
            i += width;
        } else if c == '.' {
            if !text[i..].starts_with("...") {
                let run = text[i..].chars().take_while(|&d| d == '.').count();
                return Err(Diagnostic::error(
                    "einsum::ellipsis",
                    format!("{} has a `.` that is not part of an ellipsis `...`", role.describe()),
                )
                .label(span(i, i + run), "stray `.`")
                .help("broadcast axes are written as exactly three dots `...`, with no spaces"));
            }
            let here = span(i, i + 3);
            if let Some(first) = ellipsis {
                return Err(Diagnostic::error(
                    "einsum::ellipsis",
                    format!("{} has more than one ellipsis `...`", role.describe()),
                )
                .label(here, "second `...`")
                .label(first, "first `...`")
                .help("one `...` stands for all the broadcast axes of a term; write it once"));
            }
            ellipsis = Some(here);
            items.push(Item::Ellipsis(here));
            i += 3;
        } else if is_label(c) {
            items.push(Item::Label(c, span(i, i + width)));
            i += width;
        } else {
            let help = match (c, role) {
                (',', Role::Output) => "the output is one term; commas separate the input terms only",
                ('>', Role::Operand(_)) => "the output arrow is `->`",
                _ => "a label is any character but `,` `.` `-` `>` and whitespace; `...` broadcasts, `,` separates operands, `->` starts the output",
            };
            return Err(Diagnostic::error(
                "einsum::invalid-char",
                format!("invalid character `{}` in {}", c.escape_debug(), role.describe()),
            )
            .label(span(i, i + width), "not a label")
            .help(help));
        }
    }
    Ok(Term { span: span(0, text.len()), items })
}
