//! Filters: which nodes act on a request (ARCHITECTURE.md §4).
//!
//! A [`Filter`] travels inside the signed request body as plain data (lists of
//! strings and the compound expression's source text). Both sides turn it into
//! a [`CompiledFilter`] — regexes and globs built once — the client to reject a
//! malformed filter before anything is sent, the responder to decide whether to
//! act. A node that does not match stays silent.

mod compound;
mod fact;
mod pattern;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_FILTER_ENTRIES, MAX_FILTER_PATTERNS};

pub use compound::{parse_compound, Expr, Term};
pub use fact::{FactOp, FactTerm};
pub use pattern::Pattern;

/// What a filter is evaluated against: one node's view of itself.
pub trait FilterTarget {
    /// The node's identity.
    fn identity(&self) -> &str;
    /// A fact by dotted path (`os.family`), if present.
    fn fact(&self, path: &str) -> Option<&serde_json::Value>;
    /// The node's classes.
    fn classes(&self) -> &[String];
    /// Whether the node hosts `agent`.
    fn has_agent(&self, agent: &str) -> bool;
    /// Every agent the node hosts (for agent regexes).
    fn agents(&self) -> Vec<&str>;
}

/// A request's filter, as it travels on the wire. The empty filter matches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Identities; any may match (exact, glob or `/regex/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<String>,
    /// Fact comparisons; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fact: Vec<FactTerm>,
    /// Classes; all must be present (exact or `/regex/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<String>,
    /// Agents; all must be hosted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<String>,
    /// Compound expressions (`-S`); all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compound: Vec<String>,
}

/// At most the first 80 characters of `s`, for an error about a long input.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A filter that could not be understood, with the column where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} filter {input:?}: column {column}: {message}")]
pub struct FilterError {
    /// Which part of the filter: `fact`, `identity`, `class`, `agent`, `compound`.
    pub kind: &'static str,
    /// The text that failed.
    pub input: String,
    /// 1-based column of the problem within `input`.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl FilterError {
    /// The input with a caret under the failing column, for terminals.
    pub fn pointer(&self) -> String {
        format!(
            "  {}\n  {}^",
            self.input,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

impl Filter {
    /// Whether the filter selects every node.
    pub fn is_empty(&self) -> bool {
        self.identity.is_empty()
            && self.fact.is_empty()
            && self.class.is_empty()
            && self.agent.is_empty()
            && self.compound.is_empty()
    }

    /// Whether the filter is only literal identities (no globs or regexes), so
    /// the node list is known without discovery.
    pub fn literal_identities(&self) -> Option<Vec<String>> {
        if self.identity.is_empty()
            || !self.fact.is_empty()
            || !self.class.is_empty()
            || !self.agent.is_empty()
            || !self.compound.is_empty()
        {
            return None;
        }
        self.identity
            .iter()
            .all(|i| matches!(Pattern::parse(i), Ok(Pattern::Exact(_))))
            .then(|| self.identity.clone())
    }

    /// Adds a `-W` (MCollective `--with`) term: a fact comparison if it has an
    /// operator, else a class.
    pub fn add_with(&mut self, term: &str) -> Result<(), FilterError> {
        if fact::has_operator(term) {
            self.fact.push(FactTerm::parse(term)?);
        } else {
            self.class.push(term.to_string());
        }
        Ok(())
    }

    /// How many entries the filter holds across its lists.
    pub fn entries(&self) -> usize {
        self.identity.len()
            + self.fact.len()
            + self.class.len()
            + self.agent.len()
            + self.compound.len()
    }

    /// Builds regexes and globs, and parses compound expressions. A filter
    /// with more than [`MAX_FILTER_ENTRIES`] entries is refused before any is
    /// compiled.
    pub fn compile(&self) -> Result<CompiledFilter, FilterError> {
        if self.entries() > MAX_FILTER_ENTRIES {
            return Err(FilterError {
                kind: "filter",
                input: String::new(),
                column: 1,
                message: format!(
                    "{} entries, over the bound of {MAX_FILTER_ENTRIES}",
                    self.entries()
                ),
            });
        }
        let compound = self
            .compound
            .iter()
            .map(|s| parse_compound(s))
            .collect::<Result<Vec<_>, _>>()?;
        let patterns = [&self.identity, &self.class, &self.agent]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|s| Pattern::is_compiled(s))
            .count()
            + self
                .fact
                .iter()
                .filter(|f| f.regex_source().is_some())
                .count()
            + compound.iter().map(Expr::patterns).sum::<usize>();
        if patterns > MAX_FILTER_PATTERNS {
            return Err(FilterError {
                kind: "filter",
                input: String::new(),
                column: 1,
                message: format!(
                    "{patterns} regular expressions and globs, over the bound of {MAX_FILTER_PATTERNS}"
                ),
            });
        }
        let identity = self
            .identity
            .iter()
            .map(|s| Pattern::parse(s).map_err(|e| e.into_filter_error("identity", s)))
            .collect::<Result<_, _>>()?;
        let class = self
            .class
            .iter()
            .map(|s| Pattern::parse(s).map_err(|e| e.into_filter_error("class", s)))
            .collect::<Result<_, _>>()?;
        let agent = self
            .agent
            .iter()
            .map(|s| Pattern::parse(s).map_err(|e| e.into_filter_error("agent", s)))
            .collect::<Result<_, _>>()?;
        let fact = self
            .fact
            .iter()
            .map(|f| f.compile())
            .collect::<Result<_, _>>()?;
        let compound = compound
            .iter()
            .zip(&self.compound)
            .map(|(e, s)| e.compile(s))
            .collect::<Result<_, _>>()?;
        Ok(CompiledFilter {
            identity,
            class,
            agent,
            fact,
            compound,
        })
    }
}

/// A filter ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    identity: Vec<Pattern>,
    class: Vec<Pattern>,
    agent: Vec<Pattern>,
    fact: Vec<fact::CompiledFact>,
    compound: Vec<compound::CompiledExpr>,
}

impl CompiledFilter {
    /// Whether `node` is selected.
    pub fn matches(&self, node: &dyn FilterTarget) -> bool {
        (self.identity.is_empty() || self.identity.iter().any(|p| p.matches(node.identity())))
            && self.class.iter().all(|p| class_matches(p, node))
            && self.agent.iter().all(|p| agent_matches(p, node))
            && self.fact.iter().all(|f| f.matches(node))
            && self.compound.iter().all(|e| e.matches(node))
    }
}

fn class_matches(p: &Pattern, node: &dyn FilterTarget) -> bool {
    node.classes().iter().any(|c| p.matches(c))
}

fn agent_matches(p: &Pattern, node: &dyn FilterTarget) -> bool {
    match p {
        Pattern::Exact(a) => node.has_agent(a),
        _ => node.agents().iter().any(|a| p.matches(a)),
    }
}

/// A plain node to evaluate filters against in tests (ours and other
/// crates', with the `testnode` feature).
#[cfg(any(test, feature = "testnode"))]
#[allow(missing_docs)]
pub mod testnode {
    use super::FilterTarget;

    pub struct Node {
        pub identity: String,
        pub facts: serde_json::Value,
        pub classes: Vec<String>,
        pub agents: Vec<String>,
    }

    impl Node {
        pub fn web() -> Node {
            Node {
                identity: "web-01.example.net".into(),
                facts: serde_json::json!({
                    "role": "web", "country": "fr", "cpus": 8, "version": "1.10.2",
                    "os": {"family": "Debian", "release": {"major": 12}},
                    "tags": ["a", "b"], "enabled": true, "dotted.key": "yes"
                }),
                classes: vec!["nginx".into(), "base::users".into()],
                agents: vec!["rpcutil".into(), "nrpe".into()],
            }
        }
    }

    impl FilterTarget for Node {
        fn identity(&self) -> &str {
            &self.identity
        }
        fn fact(&self, path: &str) -> Option<&serde_json::Value> {
            crate::facts::lookup(self.facts.as_object()?, path)
        }
        fn classes(&self) -> &[String] {
            &self.classes
        }
        fn has_agent(&self, agent: &str) -> bool {
            self.agents.iter().any(|a| a == agent)
        }
        fn agents(&self) -> Vec<&str> {
            self.agents.iter().map(String::as_str).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testnode::Node;
    use super::*;

    fn f(build: impl FnOnce(&mut Filter)) -> bool {
        let mut filter = Filter::default();
        build(&mut filter);
        filter.compile().unwrap().matches(&Node::web())
    }

    /// Each pattern costs up to `REGEX_SIZE_LIMIT` to build, so a filter may
    /// hold only so many, however they are spread over its lists and terms.
    #[test]
    fn a_filter_compiles_at_most_its_budget_of_patterns() {
        let re = |i: usize| format!("/^web-{i}\\w+/");
        let mut ok = Filter {
            class: (0..6).map(re).collect(),
            identity: vec!["web-*".into()],
            fact: vec![FactTerm::parse("os=~^deb").unwrap()],
            ..Filter::default()
        };
        let terms: Vec<String> = (0..8).map(|i| format!("class({})", re(i))).collect();
        ok.compound = vec![terms.join(" or ") + " or nginx"];
        assert!(ok.compile().is_ok(), "16 patterns");
        let mut over = ok.clone();
        over.agent = vec!["/x/".into()];
        let err = over.compile().unwrap_err();
        assert!(err.message.contains("17 regular expressions"), "{err}");
        // Exact names cost nothing.
        over.agent = vec!["rpcutil".into(); 500];
        assert!(over.compile().is_ok());
    }

    #[test]
    fn empty_filter_matches() {
        assert!(f(|_| {}));
    }

    #[test]
    fn identity_is_any_of_exact_glob_regex() {
        assert!(f(|x| x.identity = vec!["web-01.example.net".into()]));
        assert!(f(|x| x.identity = vec!["db".into(), "web-*".into()]));
        assert!(f(|x| x.identity = vec!["/^web-\\d+\\./".into()]));
        assert!(!f(|x| x.identity = vec!["db-*".into(), "/^mail/".into()]));
    }

    #[test]
    fn classes_and_agents_all_must_hold() {
        assert!(f(|x| x.class = vec!["nginx".into(), "/^base::/".into()]));
        assert!(!f(|x| x.class = vec!["nginx".into(), "apache".into()]));
        assert!(f(|x| x.agent = vec!["nrpe".into()]));
        assert!(!f(|x| x.agent = vec!["resource".into()]));
        assert!(f(|x| x.agent = vec!["/^rpc/".into()]));
    }

    #[test]
    fn with_splits_facts_and_classes() {
        let mut filter = Filter::default();
        filter.add_with("role=web").unwrap();
        filter.add_with("nginx").unwrap();
        assert_eq!(filter.fact.len(), 1);
        assert_eq!(filter.class, vec!["nginx".to_string()]);
        assert!(filter.compile().unwrap().matches(&Node::web()));
    }

    #[test]
    fn literal_identities_skip_discovery() {
        let mut filter = Filter {
            identity: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(filter.literal_identities().unwrap().len(), 2);
        filter.identity.push("web-*".into());
        assert!(filter.literal_identities().is_none());
    }

    #[test]
    fn bad_regex_is_an_error_with_kind() {
        let filter = Filter {
            identity: vec!["/web(/".into()],
            ..Default::default()
        };
        let err = filter.compile().unwrap_err();
        assert_eq!(err.kind, "identity");
    }
}
