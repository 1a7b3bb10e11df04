//! Deciding a request against a parsed policy.

use super::{allow_word, Decision, Groups, Names, Policy, Rule};
use mco_core::filter::FilterTarget;

impl Policy {
    /// Decides whether `caller` may run `action` on `node`: the first rule whose
    /// callers, actions, facts and classes all match decides; when none does,
    /// the policy default does.
    pub fn decide(
        &self,
        caller: &str,
        action: &str,
        node: &dyn FilterTarget,
        groups: &Groups,
    ) -> Decision {
        match self
            .rules
            .iter()
            .find(|r| r.matches(caller, action, node, groups))
        {
            Some(rule) => Decision::new(
                rule.allow,
                Some(rule.line),
                format!(
                    "{} by the rule on line {} of {}",
                    if rule.allow { "allowed" } else { "denied" },
                    rule.line,
                    self.file
                ),
            ),
            None => Decision::new(
                self.default_allow,
                None,
                format!(
                    "no rule of {} matched; policy default {}",
                    self.file,
                    allow_word(self.default_allow)
                ),
            ),
        }
    }
}

impl Rule {
    /// Whether the rule applies to this caller, action and node.
    pub fn matches(
        &self,
        caller: &str,
        action: &str,
        node: &dyn FilterTarget,
        groups: &Groups,
    ) -> bool {
        let caller_ok = match &self.callers {
            Names::Any => true,
            Names::List(list) => list
                .iter()
                .any(|c| c == caller || groups.contains(c, caller)),
        };
        let action_ok = match &self.actions {
            Names::Any => true,
            Names::List(list) => list.iter().any(|a| a == action),
        };
        caller_ok && action_ok && self.condition.as_ref().is_none_or(|c| c.matches(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mco_core::filter::testnode::Node;

    fn decide(policy: &str, caller: &str, action: &str) -> Decision {
        decide_with(policy, "", caller, action)
    }

    fn decide_with(policy: &str, groups: &str, caller: &str, action: &str) -> Decision {
        let p = Policy::parse("svc.policy", policy).unwrap();
        let g = Groups::parse("groups", groups).unwrap();
        p.decide(caller, action, &Node::web(), &g)
    }

    fn allowed(policy: &str, caller: &str, action: &str) -> bool {
        decide(policy, caller, action).allowed
    }

    #[test]
    fn allow_and_deny() {
        let p = "policy default deny\n\
                 allow\tuser:alice\tstatus restart\t*\n\
                 deny\tuser:bob\tstatus\t*\n";
        let d = decide(p, "user:alice", "restart");
        assert!(d.allowed);
        assert_eq!(d.rule, Some(2));
        assert_eq!(d.reason, "allowed by the rule on line 2 of svc.policy");
        assert!(d.error.is_none());
        let d = decide(p, "user:bob", "status");
        assert!(!d.allowed);
        assert_eq!(d.rule, Some(3));
        assert_eq!(d.reason, "denied by the rule on line 3 of svc.policy");
        assert!(!allowed(p, "user:alice", "stop"));
        assert!(!allowed(p, "node:alice", "status"));
    }

    #[test]
    fn defaults() {
        let p = "policy default allow\ndeny\tuser:bob\t*\t*\n";
        let d = decide(p, "user:alice", "stop");
        assert!(d.allowed);
        assert_eq!(d.rule, None);
        assert_eq!(
            d.reason,
            "no rule of svc.policy matched; policy default allow"
        );
        assert!(!allowed(p, "user:bob", "stop"));

        let p = "policy default deny\nallow\tuser:bob\t*\t*\n";
        assert!(!allowed(p, "user:alice", "stop"));
        // No `policy default` line: deny.
        assert!(!allowed("allow\tuser:bob\t*\t*\n", "user:alice", "stop"));
        assert!(!allowed("", "user:alice", "stop"));
    }

    #[test]
    fn stars_everywhere() {
        let p = "allow\t*\t*\t*\t*\n";
        assert!(allowed(p, "user:anyone", "anything"));
        assert!(!allowed(
            "policy default allow\ndeny\t*\t*\t*\n",
            "user:a",
            "b"
        ));
    }

    #[test]
    fn groups_in_callers() {
        let p = "allow\tops user:carol\t*\t*\n";
        let g = "ops user:alice user:bob\ndev user:dave\n";
        assert!(decide_with(p, g, "user:bob", "x").allowed);
        assert!(decide_with(p, g, "user:carol", "x").allowed);
        assert!(!decide_with(p, g, "user:dave", "x").allowed);
        // An undefined group matches nobody.
        assert!(!decide_with("allow\tadmins\t*\t*\n", g, "user:alice", "x").allowed);
    }

    #[test]
    fn fact_conditions() {
        assert!(allowed("allow\t*\t*\trole=web\n", "user:a", "x"));
        assert!(!allowed("allow\t*\t*\trole=db\n", "user:a", "x"));
        assert!(allowed(
            "allow\t*\t*\trole=web country=fr cpus>=4\n",
            "user:a",
            "x"
        ));
        assert!(!allowed(
            "allow\t*\t*\trole=web country=de\n",
            "user:a",
            "x"
        ));
        assert!(!allowed("allow\t*\t*\tos.family=~/^deb/\n", "user:a", "x"));
        assert!(allowed("allow\t*\t*\tos.family=/^Deb/\n", "user:a", "x"));
        assert!(allowed("allow\t*\t*\trole!=db\n", "user:a", "x"));
    }

    #[test]
    fn compound_facts() {
        assert!(allowed(
            "allow\t*\t*\trole=web and country=fr\n",
            "user:a",
            "x"
        ));
        assert!(!allowed(
            "allow\t*\t*\trole=web and country=de\n",
            "user:a",
            "x"
        ));
        assert!(allowed(
            "allow\t*\t*\t(role=db or role=web) and not country=de\n",
            "user:a",
            "x"
        ));
        assert!(allowed("allow\t*\t*\t!role=db\n", "user:a", "x"));
        // A compound FACTS column may test classes and identities too.
        assert!(allowed(
            "allow\t*\t*\tnginx and identity(web-*)\n",
            "user:a",
            "x"
        ));
    }

    #[test]
    fn classes_column() {
        assert!(allowed("allow\t*\t*\t*\tnginx\n", "user:a", "x"));
        assert!(allowed("allow\t*\t*\t*\tnginx /^base::/\n", "user:a", "x"));
        assert!(!allowed("allow\t*\t*\t*\tnginx apache\n", "user:a", "x"));
        assert!(allowed("allow\t*\t*\t*\tapache or nginx\n", "user:a", "x"));
        assert!(allowed("allow\t*\t*\trole=web\tnginx\n", "user:a", "x"));
        assert!(!allowed("allow\t*\t*\trole=db\tnginx\n", "user:a", "x"));
        assert!(!allowed("allow\t*\t*\trole=web\tapache\n", "user:a", "x"));
    }

    #[test]
    fn first_match_wins() {
        let p = "policy default allow\n\
                 deny\tuser:alice\tstop\t*\n\
                 allow\tuser:alice\t*\t*\n\
                 deny\t*\t*\t*\n";
        let d = decide(p, "user:alice", "stop");
        assert_eq!((d.allowed, d.rule), (false, Some(2)));
        let d = decide(p, "user:alice", "start");
        assert_eq!((d.allowed, d.rule), (true, Some(3)));
        let d = decide(p, "user:bob", "start");
        assert_eq!((d.allowed, d.rule), (false, Some(4)));
        // A rule whose facts do not hold is passed over.
        let p = "deny\t*\t*\trole=db\nallow\t*\t*\trole=web\n";
        let d = decide(p, "user:bob", "start");
        assert_eq!((d.allowed, d.rule), (true, Some(2)));
    }
}
