//! The compound filter language (`-S`).
//!
//! ```text
//! expr    := and ( "or" and )*
//! and     := unary ( "and" unary )*
//! unary   := ( "not" | "!" ) unary | primary
//! primary := "(" expr ")" | term
//! term    := identity(ARG) | fact(ARG) | agent(ARG) | class(ARG)
//!          | NAME OP VALUE   (a fact comparison)
//!          | /regex/         (a class regex)
//!          | WORD            (a class)
//! ```
//! An `ARG` is either `"quoted"` (with `\"` and `\\` escapes) or raw text up to
//! the closing parenthesis. Regexes (`/…/`) may hold spaces and parentheses.
//! Every error carries the 1-based column where it was found.

use std::fmt;

use super::fact::{has_operator, CompiledFact, FactTerm};
use super::pattern::Pattern;
use super::{shorten, FilterError, FilterTarget};
use crate::limits::{MAX_COMPOUND_DEPTH, MAX_COMPOUND_LEN, MAX_COMPOUND_TERMS};

/// A parsed compound expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both sides hold.
    And(Box<Expr>, Box<Expr>),
    /// Either side holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// A single test.
    Term(Term),
}

/// One test in a compound expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A class, exact or `/regex/`.
    Class(String),
    /// An identity: exact, glob or `/regex/`.
    Identity(String),
    /// An agent, exact or `/regex/`.
    Agent(String),
    /// A fact comparison.
    Fact(FactTerm),
}

impl fmt::Display for Expr {
    /// Prints a form that parses back to the same tree: binary operators fully
    /// parenthesised, every term in its explicit quoted form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Not(a) => write!(f, "not {a}"),
            Expr::Term(t) => {
                let (name, arg) = match t {
                    Term::Class(s) => ("class", s.clone()),
                    Term::Identity(s) => ("identity", s.clone()),
                    Term::Agent(s) => ("agent", s.clone()),
                    Term::Fact(ft) => ("fact", ft.to_string()),
                };
                write!(f, "{name}(\"")?;
                for c in arg.chars() {
                    if c == '"' || c == '\\' {
                        write!(f, "\\")?;
                    }
                    write!(f, "{c}")?;
                }
                write!(f, "\")")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    /// A function term: name and argument.
    Func(String, String),
    Word(String),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            kind: "compound",
            input: self.src.to_string(),
            column: self.src[..at.min(self.src.len())].chars().count() + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn tokens(mut self) -> Result<Vec<(usize, Tok)>, FilterError> {
        let mut out = Vec::new();
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.pos += self.peek().map_or(0, char::len_utf8);
            }
            let start = self.pos;
            let Some(c) = self.peek() else {
                return Ok(out);
            };
            let tok = match c {
                '(' => {
                    self.pos += 1;
                    Tok::LParen
                }
                ')' => {
                    self.pos += 1;
                    Tok::RParen
                }
                '!' if !self.src[self.pos..].starts_with("!=") => {
                    self.pos += 1;
                    Tok::Not
                }
                _ => self.word(start)?,
            };
            out.push((start, tok));
        }
    }

    /// Reads a word: up to whitespace or a parenthesis, with `/…/` kept whole.
    fn word(&mut self, start: usize) -> Result<Tok, FilterError> {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ')' {
                break;
            }
            if c == '(' {
                let name = &self.src[start..self.pos];
                if matches!(name, "identity" | "fact" | "agent" | "class") {
                    self.pos += 1;
                    let arg = self.argument(start)?;
                    return Ok(Tok::Func(name.to_string(), arg));
                }
                break;
            }
            if c == '/' {
                self.regex(self.pos)?;
                continue;
            }
            self.pos += c.len_utf8();
        }
        let word = &self.src[start..self.pos];
        if word.is_empty() {
            return Err(self.err(start, "unexpected character"));
        }
        Ok(match word {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            w => Tok::Word(w.to_string()),
        })
    }

    /// Skips a `/regex/` starting at `at`, honouring `\/` escapes.
    fn regex(&mut self, at: usize) -> Result<(), FilterError> {
        self.pos = at + 1;
        let mut escaped = false;
        while let Some(c) = self.peek() {
            self.pos += c.len_utf8();
            match c {
                '\\' if !escaped => escaped = true,
                '/' if !escaped => return Ok(()),
                _ => escaped = false,
            }
        }
        Err(self.err(at, "unterminated regular expression"))
    }

    /// Reads a function argument after `(`, through the closing `)`.
    fn argument(&mut self, start: usize) -> Result<String, FilterError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let arg = if self.peek() == Some('"') {
            let open = self.pos;
            self.pos += 1;
            let mut s = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.err(open, "unterminated quoted string")),
                    Some('\\') => {
                        self.pos += 1;
                        let Some(n) = self.peek() else {
                            return Err(self.err(open, "unterminated quoted string"));
                        };
                        s.push(n);
                        self.pos += n.len_utf8();
                    }
                    Some('"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(c);
                        self.pos += c.len_utf8();
                    }
                }
            }
            while self.peek().is_some_and(char::is_whitespace) {
                self.pos += 1;
            }
            s
        } else {
            let begin = self.pos;
            while let Some(c) = self.peek() {
                match c {
                    ')' => break,
                    '/' => self.regex(self.pos)?,
                    _ => self.pos += c.len_utf8(),
                }
            }
            self.src[begin..self.pos].trim().to_string()
        };
        if self.peek() != Some(')') {
            return Err(self.err(self.pos, "expected ')' to close the argument"));
        }
        self.pos += 1;
        if arg.is_empty() {
            return Err(self.err(start, "empty argument"));
        }
        Ok(arg)
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
    i: usize,
    /// Nesting of `not`, `!` and `(` around the current position.
    depth: usize,
    /// Terms read so far.
    terms: usize,
}

impl Parser<'_> {
    fn err_at(&self, byte: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            kind: "compound",
            input: self.src.to_string(),
            column: self.src[..byte.min(self.src.len())].chars().count() + 1,
            message: message.into(),
        }
    }

    fn here(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |t| t.0)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::Not) {
            self.i += 1;
            return self.nested(|p| p.unary()).map(|e| Expr::Not(Box::new(e)));
        }
        self.primary()
    }

    /// Runs `inner` one nesting level deeper, refusing to pass
    /// [`MAX_COMPOUND_DEPTH`]: the parser recurses once per level, and so do
    /// compiling, matching and dropping the tree it builds.
    fn nested(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<Expr, FilterError>,
    ) -> Result<Expr, FilterError> {
        if self.depth >= MAX_COMPOUND_DEPTH {
            let at = self.toks.get(self.i.saturating_sub(1)).map_or(0, |t| t.0);
            return Err(self.err_at(
                at,
                format!("nested more than {MAX_COMPOUND_DEPTH} levels deep"),
            ));
        }
        self.depth += 1;
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let at = self.here();
        let Some(tok) = self.peek().cloned() else {
            return Err(self.err_at(at, "expected a term, found the end of the expression"));
        };
        self.i += 1;
        match tok {
            Tok::LParen => {
                let inner = self.nested(|p| p.or())?;
                if self.peek() != Some(&Tok::RParen) {
                    let here = self.here();
                    return Err(self.err_at(here, "expected ')'"));
                }
                self.i += 1;
                Ok(inner)
            }
            Tok::RParen => Err(self.err_at(at, "unexpected ')'")),
            Tok::And | Tok::Or => Err(self.err_at(at, "expected a term before this operator")),
            Tok::Not => self.nested(|p| p.unary()).map(|e| Expr::Not(Box::new(e))),
            Tok::Func(..) | Tok::Word(_) if self.terms >= MAX_COMPOUND_TERMS => Err(self.err_at(
                at,
                format!("more than {MAX_COMPOUND_TERMS} terms in one expression"),
            )),
            Tok::Func(name, arg) => {
                self.terms += 1;
                self.term(at, &name, arg).map(Expr::Term)
            }
            Tok::Word(w) => {
                self.terms += 1;
                let term = if has_operator(&w) {
                    Term::Fact(self.fact(at, &w)?)
                } else {
                    self.check_pattern(at, &w)?;
                    Term::Class(w)
                };
                Ok(Expr::Term(term))
            }
        }
    }

    fn term(&self, at: usize, name: &str, arg: String) -> Result<Term, FilterError> {
        Ok(match name {
            "fact" => Term::Fact(self.fact(at, &arg)?),
            "identity" => {
                self.check_pattern(at, &arg)?;
                Term::Identity(arg)
            }
            "agent" => {
                self.check_pattern(at, &arg)?;
                Term::Agent(arg)
            }
            _ => {
                self.check_pattern(at, &arg)?;
                Term::Class(arg)
            }
        })
    }

    fn fact(&self, at: usize, s: &str) -> Result<FactTerm, FilterError> {
        FactTerm::parse(s).map_err(|e| FilterError {
            message: format!("{} (in fact {s:?})", e.message),
            ..self.err_at(at, "")
        })
    }

    fn check_pattern(&self, at: usize, s: &str) -> Result<(), FilterError> {
        Pattern::check(s).map_err(|e| self.err_at(at, format!("{} (in {s:?})", e.message)))
    }
}

/// Parses a compound expression, refusing one longer than
/// [`MAX_COMPOUND_LEN`] bytes, nested deeper than [`MAX_COMPOUND_DEPTH`] or
/// with more than [`MAX_COMPOUND_TERMS`] terms.
pub fn parse_compound(src: &str) -> Result<Expr, FilterError> {
    if src.len() > MAX_COMPOUND_LEN {
        return Err(FilterError {
            kind: "compound",
            input: shorten(src),
            column: 1,
            message: format!(
                "the expression is {} bytes long, over the bound of {MAX_COMPOUND_LEN}",
                src.len()
            ),
        });
    }
    let toks = Lexer { src, pos: 0 }.tokens()?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        depth: 0,
        terms: 0,
    };
    if p.toks.is_empty() {
        return Err(p.err_at(0, "empty expression"));
    }
    let expr = p.or()?;
    if p.i < p.toks.len() {
        let at = p.here();
        let message = match p.peek() {
            Some(Tok::RParen) => "unbalanced ')'",
            _ => "expected 'and', 'or' or the end of the expression",
        };
        return Err(p.err_at(at, message));
    }
    Ok(expr)
}

/// A compound expression ready to evaluate. Chains of `and` and of `or`
/// are flat lists, so compiling, matching and dropping recurse only as deep
/// as the source nests `not` and parentheses (at most
/// [`MAX_COMPOUND_DEPTH`]), however many terms a chain has.
#[derive(Debug, Clone)]
pub(crate) enum CompiledExpr {
    All(Vec<CompiledExpr>),
    Any(Vec<CompiledExpr>),
    Not(Box<CompiledExpr>),
    Class(Pattern),
    Identity(Pattern),
    Agent(Pattern),
    Fact(CompiledFact),
}

impl Expr {
    /// How many patterns (regexes and globs) compiling this expression
    /// builds, counted without recursing.
    pub(crate) fn patterns(&self) -> usize {
        let mut n = 0;
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::And(a, b) | Expr::Or(a, b) => {
                    stack.push(a);
                    stack.push(b);
                }
                Expr::Not(a) => stack.push(a),
                Expr::Term(Term::Fact(f)) => n += usize::from(f.regex_source().is_some()),
                Expr::Term(Term::Class(s) | Term::Identity(s) | Term::Agent(s)) => {
                    n += usize::from(Pattern::is_compiled(s));
                }
            }
        }
        n
    }

    /// The operands of a chain of `And`s (or of `Or`s) under `self`, left to
    /// right, found without recursing along the chain.
    fn chain(&self, and: bool) -> Vec<&Expr> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match (e, and) {
                (Expr::And(a, b), true) | (Expr::Or(a, b), false) => {
                    stack.push(b);
                    stack.push(a);
                }
                (other, _) => out.push(other),
            }
        }
        out
    }

    pub(crate) fn compile(&self, src: &str) -> Result<CompiledExpr, FilterError> {
        let pat = |s: &str| Pattern::parse(s).map_err(|e| e.into_filter_error("compound", src));
        Ok(match self {
            Expr::And(..) => CompiledExpr::All(
                self.chain(true)
                    .into_iter()
                    .map(|e| e.compile(src))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(..) => CompiledExpr::Any(
                self.chain(false)
                    .into_iter()
                    .map(|e| e.compile(src))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(a) => CompiledExpr::Not(Box::new(a.compile(src)?)),
            Expr::Term(Term::Class(s)) => CompiledExpr::Class(pat(s)?),
            Expr::Term(Term::Identity(s)) => CompiledExpr::Identity(pat(s)?),
            Expr::Term(Term::Agent(s)) => CompiledExpr::Agent(pat(s)?),
            Expr::Term(Term::Fact(f)) => CompiledExpr::Fact(f.compile()?),
        })
    }
}

impl CompiledExpr {
    pub(crate) fn matches(&self, node: &dyn FilterTarget) -> bool {
        match self {
            CompiledExpr::All(all) => all.iter().all(|e| e.matches(node)),
            CompiledExpr::Any(any) => any.iter().any(|e| e.matches(node)),
            CompiledExpr::Not(a) => !a.matches(node),
            CompiledExpr::Class(p) => node.classes().iter().any(|c| p.matches(c)),
            CompiledExpr::Identity(p) => p.matches(node.identity()),
            CompiledExpr::Agent(Pattern::Exact(a)) => node.has_agent(a),
            CompiledExpr::Agent(p) => node.agents().iter().any(|a| p.matches(a)),
            CompiledExpr::Fact(f) => f.matches(node),
        }
    }
}

#[cfg(test)]
mod tests;
