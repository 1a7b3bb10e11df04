//! Binding a request to where it goes.
//!
//! A signature proves who sent a request; the binding proves where it was
//! meant to go. Without it a captured request could be published again on
//! another node's subject, or on the broadcast subject, and its replies sent
//! to whoever republished it: the signature would still verify. So the signed
//! body names its [`Target`] (the node identities it is for, or "broadcast")
//! and its reply subject (`reply_to`), and a responder acts on a request only
//! when the subject it arrived on, the reply subject that came with it and
//! the node's own identity agree with what was signed
//! ([`RequestBody::check_binding`]).
//!
//! Both fields are optional on the wire, so protocol v1 requests without them
//! still decode. A secure responder refuses such an unbound request; an
//! insecure one (a demo) answers it on the message's reply subject, as v1 did.

use serde::{Deserialize, Serialize};

use crate::subject;
use crate::wire::RequestBody;

/// Which nodes a request is for, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every node hosting the agent that the filter selects, reached on the
    /// agent's broadcast subject (`C.broadcast.agent.AGENT`).
    Broadcast,
    /// Only these nodes, each reached on its own subject (`C.node.IDENTITY`).
    Nodes(Vec<String>),
}

/// How one request reached one node.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The subject it arrived on.
    pub subject: &'a str,
    /// The reply subject the message carried, if any.
    pub reply: Option<&'a str>,
    /// The identity of the node that received it.
    pub identity: &'a str,
}

/// Why a request was not acted on where it arrived.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BindingError {
    /// The body does not say both which nodes it is for and where replies go.
    #[error("the request does not say which nodes it is for and where its replies go (an unbound request)")]
    Unbound,
    /// It arrived on a subject its target does not use.
    #[error("a request signed for {target} arrived on {subject}")]
    WrongSubject {
        /// What the body was signed for.
        target: String,
        /// Where it arrived.
        subject: String,
    },
    /// It names nodes, and this node is not among them.
    #[error("the request was signed for other nodes, not {identity}")]
    NotForThisNode {
        /// This node.
        identity: String,
    },
    /// The message asks for replies somewhere other than the signed subject.
    #[error("the request's replies were signed to go to {signed}, but the message asks for them on {given}")]
    ReplyMismatch {
        /// The signed reply subject.
        signed: String,
        /// The reply subject the message carried.
        given: String,
    },
}

impl BindingError {
    /// A short stable name, used as the counter key in `daemon_stats`.
    pub fn reason(&self) -> &'static str {
        match self {
            BindingError::Unbound => "unbound",
            BindingError::WrongSubject { .. } | BindingError::NotForThisNode { .. } => {
                "wrong_target"
            }
            BindingError::ReplyMismatch { .. } => "reply_mismatch",
        }
    }
}

impl RequestBody {
    /// Whether the body carries neither binding field: a protocol v1 request.
    pub fn is_unbound(&self) -> bool {
        self.target.is_none() && self.reply_to.is_none()
    }

    /// Signs this body for `target`, with replies to the caller's reply
    /// subject for this request id.
    pub fn bind(&mut self, target: Target) {
        self.reply_to = Some(subject::reply(&self.collective, &self.caller, &self.id));
        self.target = Some(target);
    }

    /// Checks that this request was signed for `delivery`: the subject it
    /// arrived on is the one its target uses, this node is among the target
    /// identities, and the message's reply subject is the signed one. Returns
    /// the reply subject to answer on.
    pub fn check_binding(&self, delivery: &Delivery<'_>) -> Result<&str, BindingError> {
        let (Some(target), Some(reply_to)) = (&self.target, &self.reply_to) else {
            return Err(BindingError::Unbound);
        };
        let wrong_subject = |what: String| BindingError::WrongSubject {
            target: what,
            subject: delivery.subject.to_string(),
        };
        match target {
            Target::Broadcast => {
                if delivery.subject != subject::broadcast(&self.collective, &self.agent) {
                    return Err(wrong_subject(format!("a broadcast to {}", self.agent)));
                }
            }
            Target::Nodes(nodes) => {
                if delivery.subject != subject::node(&self.collective, delivery.identity) {
                    return Err(wrong_subject("nodes by name".to_string()));
                }
                if !nodes.iter().any(|n| n == delivery.identity) {
                    return Err(BindingError::NotForThisNode {
                        identity: delivery.identity.to_string(),
                    });
                }
            }
        }
        match delivery.reply {
            Some(given) if given == reply_to => Ok(reply_to),
            given => Err(BindingError::ReplyMismatch {
                signed: reply_to.clone(),
                given: given.unwrap_or("(none)").to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::request as ping;

    /// A ping to collective `c`.
    fn request() -> RequestBody {
        RequestBody {
            collective: "c".into(),
            ..ping()
        }
    }

    fn at<'a>(subject: &'a str, reply: Option<&'a str>, identity: &'a str) -> Delivery<'a> {
        Delivery {
            subject,
            reply,
            identity,
        }
    }

    #[test]
    fn a_request_for_named_nodes_is_acted_on_by_them_alone() {
        let mut r = request();
        r.bind(Target::Nodes(vec!["web1".into(), "web2".into()]));
        let reply = r.reply_to.clone().unwrap();
        assert_eq!(reply, subject::reply("c", "user:alice", &r.id));
        for node in ["web1", "web2"] {
            let subject = subject::node("c", node);
            assert_eq!(
                r.check_binding(&at(&subject, Some(&reply), node)),
                Ok(reply.as_str())
            );
        }
        // Replayed onto another node's subject.
        let db = subject::node("c", "db1");
        assert_eq!(
            r.check_binding(&at(&db, Some(&reply), "db1")),
            Err(BindingError::NotForThisNode {
                identity: "db1".into()
            })
        );
        // Replayed onto the broadcast subject.
        let all = subject::broadcast("c", "rpcutil");
        assert!(matches!(
            r.check_binding(&at(&all, Some(&reply), "web1")),
            Err(BindingError::WrongSubject { .. })
        ));
        // Replies redirected.
        let web1 = subject::node("c", "web1");
        let err = r
            .check_binding(&at(&web1, Some("c.reply.evil.1"), "web1"))
            .unwrap_err();
        assert_eq!(err.reason(), "reply_mismatch");
        assert_eq!(
            r.check_binding(&at(&web1, None, "web1"))
                .unwrap_err()
                .reason(),
            "reply_mismatch"
        );
    }

    #[test]
    fn a_broadcast_is_acted_on_only_from_its_agents_broadcast_subject() {
        let mut r = request();
        r.bind(Target::Broadcast);
        let reply = r.reply_to.clone().unwrap();
        let all = subject::broadcast("c", "rpcutil");
        assert!(r.check_binding(&at(&all, Some(&reply), "any")).is_ok());
        let other_agent = subject::broadcast("c", "resource");
        let direct = subject::node("c", "any");
        for subject in [&other_agent, &direct] {
            assert_eq!(
                r.check_binding(&at(subject, Some(&reply), "any"))
                    .unwrap_err()
                    .reason(),
                "wrong_target"
            );
        }
    }

    #[test]
    fn half_bound_and_unbound_requests_are_unbound() {
        let mut r = request();
        assert!(r.is_unbound());
        let all = subject::broadcast("c", "rpcutil");
        assert_eq!(
            r.check_binding(&at(&all, Some("x"), "n")),
            Err(BindingError::Unbound)
        );
        r.target = Some(Target::Broadcast);
        assert!(!r.is_unbound());
        assert_eq!(
            r.check_binding(&at(&all, Some("x"), "n")),
            Err(BindingError::Unbound)
        );
    }

    #[test]
    fn the_binding_round_trips_and_an_unbound_body_encodes_as_v1_did() {
        let r = request();
        let v1 = r.encode();
        assert!(!v1.windows(6).any(|w| w == b"target"));
        let mut bound = r.clone();
        bound.bind(Target::Nodes(vec!["a".into()]));
        let env = crate::wire::Envelope::unsigned(crate::wire::Kind::Request, bound.encode());
        assert_eq!(env.request().unwrap(), bound);
        let env = crate::wire::Envelope::unsigned(crate::wire::Kind::Request, v1);
        assert!(env.request().unwrap().is_unbound());
    }
}
