//! Fact comparisons: `name OP value`.

use std::cmp::Ordering;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pattern::{check_regex, compile_regex, regex_source};
use super::{FilterError, FilterTarget};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FactOp {
    /// `=` or `==`: equality (a `/regex/` value makes it a regex match).
    #[serde(rename = "==")]
    Eq,
    /// `!=`.
    #[serde(rename = "!=")]
    Ne,
    /// `<`.
    #[serde(rename = "<")]
    Lt,
    /// `>`.
    #[serde(rename = ">")]
    Gt,
    /// `<=` (also written `=<`).
    #[serde(rename = "<=")]
    Le,
    /// `>=` (also written `=>`).
    #[serde(rename = ">=")]
    Ge,
    /// `=~`: regex match.
    #[serde(rename = "=~")]
    Re,
}

impl FactOp {
    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FactOp::Eq => "==",
            FactOp::Ne => "!=",
            FactOp::Lt => "<",
            FactOp::Gt => ">",
            FactOp::Le => "<=",
            FactOp::Ge => ">=",
            FactOp::Re => "=~",
        }
    }
}

/// Operators in the order MCollective tries them at one position.
const OPERATORS: [(&str, FactOp); 10] = [
    ("=>", FactOp::Ge),
    ("=<", FactOp::Le),
    ("<=", FactOp::Le),
    (">=", FactOp::Ge),
    ("!=", FactOp::Ne),
    ("==", FactOp::Eq),
    ("=~", FactOp::Re),
    ("<", FactOp::Lt),
    (">", FactOp::Gt),
    ("=", FactOp::Eq),
];

/// Whether `s` contains a fact operator (so `-W` treats it as a fact).
pub(crate) fn has_operator(s: &str) -> bool {
    s.contains(['=', '<', '>'])
}

/// One fact comparison, as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactTerm {
    /// Fact name, dotted for nested facts.
    pub fact: String,
    /// Operator.
    pub op: FactOp,
    /// Right-hand side as written (`/re/` for a regex).
    pub value: String,
}

impl std::fmt::Display for FactTerm {
    /// `NAME OP VALUE` as [`FactTerm::parse`] reads it back: without spaces,
    /// unless the value starts with a character that would run into the
    /// operator (`cpus > =` is not `cpus >=`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gap = if self.value.starts_with(['=', '~', '<', '>', '!']) {
            " "
        } else {
            ""
        };
        write!(f, "{}{}{gap}{}", self.fact, self.op.as_str(), self.value)
    }
}

impl FactTerm {
    /// Parses `name OP value`; spaces around the operator are allowed.
    pub fn parse(s: &str) -> Result<FactTerm, FilterError> {
        let err = |column: usize, message: &str| FilterError {
            kind: "fact",
            input: s.to_string(),
            column,
            message: message.to_string(),
        };
        let pos = s.find(['=', '<', '>', '!']).ok_or_else(|| {
            err(
                1,
                "expected NAME OP VALUE, with OP one of = == != < > <= >= =~",
            )
        })?;
        let rest = &s[pos..];
        let (text, op) = OPERATORS
            .iter()
            .find(|(text, _)| rest.starts_with(text))
            .ok_or_else(|| err(pos + 1, "unknown operator"))?;
        let fact = s[..pos].trim();
        if fact.is_empty() {
            return Err(err(1, "missing fact name before the operator"));
        }
        if fact.contains(char::is_whitespace) {
            return Err(err(1, "fact name contains a space"));
        }
        let value = rest[text.len()..].trim();
        if value.is_empty() {
            return Err(err(
                pos + text.len() + 1,
                "missing value after the operator",
            ));
        }
        let term = FactTerm {
            fact: fact.to_string(),
            op: *op,
            value: value.to_string(),
        };
        if let Some(src) = term.regex_source() {
            check_regex(src).map_err(|e| FilterError {
                kind: "fact",
                input: s.to_string(),
                column: e.column + pos + text.len(),
                message: e.message,
            })?;
        }
        Ok(term)
    }

    /// The regex this comparison compiles to, if it is one.
    pub(crate) fn regex_source(&self) -> Option<&str> {
        match (self.op, regex_source(&self.value)) {
            (FactOp::Re, Some(src)) => Some(src),
            (FactOp::Re, None) => Some(&self.value),
            (FactOp::Eq | FactOp::Ne, Some(src)) => Some(src),
            _ => None,
        }
    }

    /// Prepares the comparison (compiling a regex if there is one).
    pub(crate) fn compile(&self) -> Result<CompiledFact, FilterError> {
        let regex_err = |e: super::pattern::PatternError| FilterError {
            kind: "fact",
            input: self.to_string(),
            column: e.column,
            message: e.message,
        };
        let cmp = match (self.op, self.regex_source()) {
            (FactOp::Ne, Some(src)) => Cmp::NotRegex(compile_regex(src).map_err(regex_err)?),
            (_, Some(src)) => Cmp::Regex(compile_regex(src).map_err(regex_err)?),
            (op, None) => Cmp::Value(op, self.value.clone(), self.value.parse::<f64>().ok()),
        };
        Ok(CompiledFact {
            fact: self.fact.clone(),
            cmp,
        })
    }
}

#[derive(Debug, Clone)]
enum Cmp {
    Regex(Regex),
    NotRegex(Regex),
    Value(FactOp, String, Option<f64>),
}

/// A fact comparison ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct CompiledFact {
    fact: String,
    cmp: Cmp,
}

impl CompiledFact {
    /// Whether the node's fact satisfies the comparison. A missing fact never
    /// does; an array fact does if any element does (for `!=`, if none is equal).
    pub(crate) fn matches(&self, node: &dyn FilterTarget) -> bool {
        let Some(value) = node.fact(&self.fact) else {
            return false;
        };
        match (&self.cmp, value) {
            (Cmp::NotRegex(re), Value::Array(items)) => !items.iter().any(|v| self.scalar(v, re)),
            (Cmp::NotRegex(re), v) => !self.scalar(v, re),
            (Cmp::Value(FactOp::Ne, want, num), Value::Array(items)) => {
                !items.iter().any(|v| equal(v, want, *num))
            }
            (_, Value::Array(items)) => items.iter().any(|v| self.one(v)),
            (_, v) => self.one(v),
        }
    }

    fn scalar(&self, v: &Value, re: &Regex) -> bool {
        re.is_match(&scalar_text(v))
    }

    fn one(&self, v: &Value) -> bool {
        match &self.cmp {
            Cmp::Regex(re) => re.is_match(&scalar_text(v)),
            Cmp::NotRegex(re) => !re.is_match(&scalar_text(v)),
            Cmp::Value(op, want, num) => match op {
                FactOp::Eq => equal(v, want, *num),
                FactOp::Ne => !equal(v, want, *num),
                // `=~` always compiles to `Cmp::Regex`; a plain value never matches it.
                FactOp::Re => false,
                FactOp::Lt => order(v, want, *num) == Some(Ordering::Less),
                FactOp::Gt => order(v, want, *num) == Some(Ordering::Greater),
                FactOp::Le => {
                    matches!(order(v, want, *num), Some(Ordering::Less | Ordering::Equal))
                }
                FactOp::Ge => matches!(
                    order(v, want, *num),
                    Some(Ordering::Greater | Ordering::Equal)
                ),
            },
        }
    }
}

/// A fact value as text for string and regex comparisons.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn equal(v: &Value, want: &str, num: Option<f64>) -> bool {
    if let (Some(a), Some(b)) = (as_number(v), num) {
        return a == b;
    }
    scalar_text(v) == want
}

fn order(v: &Value, want: &str, num: Option<f64>) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (as_number(v), num) {
        return a.partial_cmp(&b);
    }
    Some(version_cmp(&scalar_text(v), want))
}

/// Compares two strings as versions: digit runs numerically, other runs as text.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let mut x = chunks(a);
    let mut y = chunks(b);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let ord = match (p.parse::<u128>(), q.parse::<u128>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => p.cmp(q),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        if rest.is_empty() {
            return None;
        }
        let digit = rest.starts_with(|c: char| c.is_ascii_digit());
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::super::testnode::Node;
    use super::*;

    fn m(s: &str) -> bool {
        FactTerm::parse(s)
            .unwrap()
            .compile()
            .unwrap()
            .matches(&Node::web())
    }

    /// The fuzzer's find (`fuzz/regressions/filter_fact/gt-then-equals`): `cpus > =` parsed
    /// as `>` with the value `=`, printed as `cpus>=`, which does not parse. A term now prints
    /// as text that parses back to the same term, whatever its value starts with.
    #[test]
    fn a_term_prints_as_text_that_parses_back_to_it() {
        for s in [
            "cpus > =", "a = =b", "a = ~x", "a < =3", "a != !x", "a =~ /x/", "a>=1", "a = >1",
            "role=web",
        ] {
            let t = FactTerm::parse(s).unwrap();
            let again = FactTerm::parse(&t.to_string())
                .unwrap_or_else(|e| panic!("{s:?} prints as {t}: {e}"));
            assert_eq!(again, t, "{s:?} prints as {t}");
        }
        assert_eq!(
            FactTerm::parse("role = web").unwrap().to_string(),
            "role==web"
        );
    }

    #[test]
    fn parses_every_operator() {
        for (s, op) in [
            ("a=1", FactOp::Eq),
            ("a==1", FactOp::Eq),
            ("a!=1", FactOp::Ne),
            ("a<1", FactOp::Lt),
            ("a>1", FactOp::Gt),
            ("a<=1", FactOp::Le),
            ("a=<1", FactOp::Le),
            ("a>=1", FactOp::Ge),
            ("a=>1", FactOp::Ge),
            ("a=~^x", FactOp::Re),
            ("a = 1", FactOp::Eq),
        ] {
            let t = FactTerm::parse(s).unwrap();
            assert_eq!(
                (t.fact.as_str(), t.op, t.value.as_str()),
                ("a", op, t.value.as_str())
            );
            assert_eq!(t.op, op, "{s}");
        }
    }

    #[test]
    fn rejects_malformed_with_column() {
        let e = FactTerm::parse("role").unwrap_err();
        assert_eq!(e.column, 1);
        let e = FactTerm::parse("role=").unwrap_err();
        assert_eq!(e.column, 6);
        let e = FactTerm::parse("=web").unwrap_err();
        assert_eq!(e.column, 1);
        assert!(FactTerm::parse("role=~/web(/").is_err());
    }

    #[test]
    fn equality_numeric_and_string() {
        assert!(m("role=web"));
        assert!(!m("role=db"));
        assert!(m("cpus=8"));
        assert!(m("cpus==8.0"));
        assert!(m("enabled=true"));
        assert!(m("role!=db"));
        assert!(!m("role!=web"));
        assert!(!m("missing=x"));
        assert!(!m("missing!=x"));
    }

    #[test]
    fn ordering_numeric_and_versions() {
        assert!(m("cpus>4"));
        assert!(m("cpus>=8"));
        assert!(!m("cpus<8"));
        assert!(m("cpus<=8"));
        assert!(m("cpus<10"), "numeric, not lexical");
        assert!(m("version>1.9"));
        assert!(m("version<1.10.10"));
        assert!(m("os.release.major>=12"));
    }

    #[test]
    fn regexes_and_nesting_and_arrays() {
        assert!(m("role=~^w"));
        assert!(m("role=/^we/"));
        assert!(!m("role=/^db/"));
        assert!(m("role!=/^db/"));
        assert!(m("os.family=Debian"));
        assert!(m("tags=b"));
        assert!(!m("tags!=b"));
        assert!(m("tags!=c"));
        assert!(m("dotted.key=yes"));
    }

    #[test]
    fn version_compare() {
        assert_eq!(version_cmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(version_cmp("2.0.0", "2.0.0"), Ordering::Equal);
        assert_eq!(version_cmp("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(version_cmp("abc", "abd"), Ordering::Less);
    }
}
