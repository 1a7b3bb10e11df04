//! Which verified senders a discovery or a call takes replies from.
//!
//! Every node evaluates a request's filter on itself and stays silent when
//! it does not match, but a node whose root is hostile answers anyway: a
//! discovery that kept its reply would then send it the real request, with
//! its inputs. So the client checks what it can check itself — the
//! certificate-verified sender against the filter's identity patterns
//! (exact, glob or `/regex/`) — and drops what does not fit, counting it;
//! a call also takes replies only from the nodes it sent the request to. Facts, classes, agents and
//! compound expressions are the node's own word and cannot be checked here.

use mco_core::filter::Pattern;
use mco_core::Filter;

use crate::error::ClientError;

/// The senders a discovery or a call accepts replies from.
#[derive(Debug, Clone, Default)]
pub struct Senders {
    /// The filter's identity patterns; any may match, none means any name.
    identity: Vec<Pattern>,
}

impl Senders {
    /// The senders `filter`'s identity patterns allow (every name when it
    /// has none).
    pub fn from_filter(filter: &Filter) -> Result<Senders, ClientError> {
        let identity = filter
            .identity
            .iter()
            .map(|s| {
                Pattern::parse(s)
                    .map_err(|e| ClientError::Usage(format!("identity filter {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Senders { identity })
    }

    /// Whether a reply verified as sent by `sender` is taken.
    pub fn admits(&self, sender: &str) -> bool {
        self.identity.is_empty() || self.identity.iter().any(|p| p.matches(sender))
    }
}

/// What to tell the operator about `n` replies from nodes the filter does
/// not select, during `what`.
pub fn outside_words(n: usize, what: &str) -> String {
    format!(
        "ignored {n} {what} replies from nodes the filter does not select (a node answering anyway may be compromised)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_identity(ids: &[&str]) -> Filter {
        Filter {
            identity: ids.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        }
    }

    #[test]
    fn identity_patterns_exact_glob_and_regex() {
        let s = Senders::from_filter(&with_identity(&["db-*", "web1", "/^cache-\\d+$/"])).unwrap();
        for yes in ["db-01", "db-", "web1", "cache-7"] {
            assert!(s.admits(yes), "{yes}");
        }
        for no in ["evil-07", "web10", "xdb-01", "cache-x", ""] {
            assert!(!s.admits(no), "{no}");
        }
    }

    #[test]
    fn no_identity_patterns_admit_every_name() {
        let s = Senders::from_filter(&Filter::default()).unwrap();
        assert!(s.admits("evil-07"));
        let facts_only = Filter {
            class: vec!["db".into()],
            ..Filter::default()
        };
        assert!(Senders::from_filter(&facts_only).unwrap().admits("evil-07"));
    }

    #[test]
    fn a_bad_pattern_is_an_error_not_a_pass() {
        let e = Senders::from_filter(&with_identity(&["/(/"])).unwrap_err();
        assert!(e.to_string().contains("identity filter"), "{e}");
    }
}
