//! One name pattern: exact text, a glob (`web-*`) or a `/regex/`.

use globset::{Glob, GlobMatcher};
use regex::{Regex, RegexBuilder};

use super::FilterError;
use crate::limits::{MAX_PATTERN_LEN, REGEX_SIZE_LIMIT};

fn too_long(len: usize) -> PatternError {
    PatternError {
        column: 1,
        message: format!("the pattern is {len} bytes long, over the bound of {MAX_PATTERN_LEN}"),
    }
}

/// A compiled name pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Matches exactly this text.
    Exact(String),
    /// A shell-style glob.
    Glob(GlobMatcher),
    /// A regular expression, unanchored unless it anchors itself.
    Regex(Regex),
}

/// Why a pattern did not compile.
#[derive(Debug, Clone)]
pub struct PatternError {
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl PatternError {
    pub(crate) fn into_filter_error(self, kind: &'static str, input: &str) -> FilterError {
        FilterError {
            kind,
            input: input.to_string(),
            column: self.column,
            message: self.message,
        }
    }
}

/// If `s` is written `/re/`, the regex source.
pub(crate) fn regex_source(s: &str) -> Option<&str> {
    (s.len() >= 2 && s.starts_with('/') && s.ends_with('/')).then(|| &s[1..s.len() - 1])
}

/// Compiles a regex from outside: at most [`MAX_PATTERN_LEN`] bytes of
/// source, and at most [`REGEX_SIZE_LIMIT`] bytes for its program and for its
/// lazy DFA, so no request can hold a node's CPU or memory while it compiles
/// or runs.
pub(crate) fn compile_regex(src: &str) -> Result<Regex, PatternError> {
    if src.len() > MAX_PATTERN_LEN {
        return Err(too_long(src.len()));
    }
    RegexBuilder::new(src)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| invalid_regex(&e))
}

fn invalid_regex(e: &dyn std::fmt::Display) -> PatternError {
    PatternError {
        column: 2,
        message: format!("invalid regular expression: {}", first_line(&e.to_string())),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| s.lines().next().unwrap_or(""))
        .to_string()
}

/// Checks a regex's length and syntax without compiling it.
pub(crate) fn check_regex(src: &str) -> Result<(), PatternError> {
    if src.len() > MAX_PATTERN_LEN {
        return Err(too_long(src.len()));
    }
    regex_syntax::Parser::new()
        .parse(src)
        .map(|_| ())
        .map_err(|e| invalid_regex(&e))
}

/// How a pattern is written.
enum Written<'a> {
    /// `/re/`, with its source.
    Regex(&'a str),
    /// A glob (`*`, `?` or `[`).
    Glob,
    /// Exact text.
    Exact,
}

impl Written<'_> {
    /// How `s` is written, whatever its length.
    fn of(s: &str) -> Written<'_> {
        match regex_source(s) {
            Some(src) => Written::Regex(src),
            None if s.contains(['*', '?', '[']) => Written::Glob,
            None => Written::Exact,
        }
    }

    /// How `s` is written, if it is neither empty nor too long.
    fn checked(s: &str) -> Result<Written<'_>, PatternError> {
        if s.is_empty() {
            return Err(PatternError {
                column: 1,
                message: "empty pattern".into(),
            });
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(too_long(s.len()));
        }
        Ok(Written::of(s))
    }
}

fn glob(s: &str) -> Result<Glob, PatternError> {
    Glob::new(s).map_err(|e| PatternError {
        column: 1,
        message: format!("invalid glob: {e}"),
    })
}

impl Pattern {
    /// Whether `s` compiles to a regex or a glob (counted against
    /// [`MAX_FILTER_PATTERNS`](crate::limits::MAX_FILTER_PATTERNS)) rather
    /// than exact text.
    pub fn is_compiled(s: &str) -> bool {
        !matches!(Written::of(s), Written::Exact)
    }

    /// Checks what [`parse`](Self::parse) would, without compiling: a
    /// parser calls this, so each pattern is compiled once, later, under the
    /// filter's budget (a regex's compiled size is only known then).
    pub fn check(s: &str) -> Result<(), PatternError> {
        match Written::checked(s)? {
            Written::Regex(src) => check_regex(src),
            Written::Glob => glob(s).map(|_| ()),
            Written::Exact => Ok(()),
        }
    }

    /// Parses `/re/`, a glob (`*`, `?` or `[`) or exact text.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        match Written::checked(s)? {
            Written::Regex(src) => compile_regex(src).map(Pattern::Regex),
            Written::Glob => glob(s).map(|g| Pattern::Glob(g.compile_matcher())),
            Written::Exact => Ok(Pattern::Exact(s.to_string())),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == text,
            Pattern::Glob(g) => g.is_match(text),
            Pattern::Regex(r) => r.is_match(text),
        }
    }
}
