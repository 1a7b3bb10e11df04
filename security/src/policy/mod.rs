//! Authorization: MCollective actionpolicy files (ARCHITECTURE.md §7).
//!
//! A responder decides whether a caller may run an action with one policy file
//! per agent, `<policy_dir>/<agent>.policy`, written in MCollective's
//! actionpolicy format so that existing policies carry over:
//!
//! ```text
//! # comments and blank lines are skipped; columns below are tabs
//! policy default deny
//! allow   user:alice ops  *        *
//! allow   *               status   role=web and country=fr
//! deny    user:mallory    restart  *        nginx
//! ```
//!
//! An optional `policy default allow|deny` line comes before the rules; a file
//! without one denies what no rule matched. Each rule has four or five
//! columns: `allow|deny`, CALLERS, ACTIONS, FACTS and optionally CLASSES.
//! CALLERS and ACTIONS are `*` or space-separated lists; a caller is a caller
//! id (`user:alice`, `node:web1`) or the name of a group from the `groups`
//! file next to the policies. FACTS is `*`, space-separated `fact=value` terms
//! (all must hold, with every operator of the filter language) or a compound
//! filter expression; CLASSES is `*`, space-separated classes (all present) or
//! a compound expression. The first rule that matches decides.
//!
//! Columns are separated by tabs, as MCollective requires. Editors that turn
//! tabs into spaces are common, so a line that holds no tab at all is split on
//! runs of two or more spaces instead; a line with a tab is split on tabs only,
//! and a single space never separates columns. Anything unexpected is an
//! error with its line and 1-based column (counted in characters, a tab being
//! one), and the [`Authorizer`] denies every action of an agent whose policy
//! file does not parse.

mod authorizer;
mod eval;
mod parse;

use std::collections::HashMap;
use std::fmt;

use mco_core::filter::CompiledFilter;

pub use authorizer::{Authorizer, RPCUTIL_READ_ONLY};

/// A policy or groups file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file, as named by whoever parsed it.
    pub file: String,
    /// 1-based line of the problem; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based column within the line, in characters; 0 with `line` 0.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// A list column: `*` or explicit names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    /// `*`: anything matches.
    Any,
    /// Any of these matches.
    List(Vec<String>),
}

/// One `allow`/`deny` line.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The line it was written on.
    pub line: usize,
    /// `allow` (true) or `deny` (false).
    pub allow: bool,
    /// Caller ids and group names.
    pub callers: Names,
    /// Action names.
    pub actions: Names,
    /// The FACTS column as written, `None` for `*`.
    pub facts: Option<String>,
    /// The CLASSES column as written, `None` for `*` or when absent.
    pub classes: Option<String>,
    /// FACTS and CLASSES together, ready to evaluate; `None` when both are `*`.
    condition: Option<CompiledFilter>,
}

/// A parsed `<agent>.policy` file.
#[derive(Debug, Clone)]
pub struct Policy {
    file: String,
    default_allow: bool,
    rules: Vec<Rule>,
}

impl Policy {
    /// Parses a policy file; `file` names it in errors and decisions.
    pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
        parse::policy(file, text)
    }

    /// The file name given to [`Policy::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// What happens when no rule matches (`policy default`, else deny).
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// Named groups of callers, from the `groups` file.
///
/// One group per line: its name, then its members separated by whitespace.
/// Group names cannot contain `:`, so they are never mistaken for caller ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    groups: HashMap<String, Vec<String>>,
}

impl Groups {
    /// Parses a groups file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Groups, PolicyError> {
        parse::groups(file, text)
    }

    /// The members of `group`, if it is defined.
    pub fn members(&self, group: &str) -> Option<&[String]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// Whether `caller` belongs to `group`.
    pub fn contains(&self, group: &str, caller: &str) -> bool {
        self.members(group)
            .is_some_and(|m| m.iter().any(|c| c == caller))
    }

    /// How many groups are defined.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is defined.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may run.
    pub allowed: bool,
    /// The line of the rule that decided, if one did.
    pub rule: Option<usize>,
    /// Why, in words fit for a log line.
    pub reason: String,
    /// The policy or groups file that could not be used, if that is why the
    /// request was denied.
    pub error: Option<PolicyError>,
}

impl Decision {
    fn new(allowed: bool, rule: Option<usize>, reason: String) -> Decision {
        Decision {
            allowed,
            rule,
            reason,
            error: None,
        }
    }
}

fn allow_word(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}
