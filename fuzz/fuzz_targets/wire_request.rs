//! The responder's path for one message from the bus: the envelope
//! (`Envelope::decode`), the request body (`Envelope::request`), the
//! signature and certificate (`TrustStore::verify` against a test CA), the
//! time-to-live (`RequestBody::check_ttl`), the binding to a target and reply
//! subject (`RequestBody::check_binding`, which must accept only a delivery
//! that matches what was signed), the filter (`Filter::compile`,
//! `CompiledFilter::matches`) and the action's inputs against the shipped
//! DDLs (`Action::validate`).
//!
//! The first byte picks the shape: even, the rest is a whole message as
//! anyone on the bus could send; odd, the rest is a request body sealed by
//! a valid user certificate, so everything after the signature check is
//! reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::wire::{now_ms, Envelope, Kind, DEFAULT_MAX_PAYLOAD};
use mco_fuzz::{on_worker_stack, pki, shipped_ddls, Node};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let pki = pki();
    let payload = if shape % 2 == 0 {
        rest.to_vec()
    } else {
        pki.user.seal(Kind::Request, rest.to_vec()).encode()
    };
    on_worker_stack(|| responder(&payload));
});

fn responder(payload: &[u8]) {
    let Ok(env) = Envelope::decode(payload, DEFAULT_MAX_PAYLOAD, Kind::Request) else {
        return;
    };
    // What decoded re-encodes to the same envelope.
    let again = Envelope::decode(&env.encode(), usize::MAX, Kind::Request)
        .expect("a decoded envelope re-encodes");
    assert_eq!(again, env);
    let req = env.request();
    let signer = pki().trust.verify(&env, mco_fuzz::now_s());
    let Ok(req) = req else {
        return;
    };
    if let Ok(p) = &signer {
        assert_eq!(p.name, "user:alice", "only alice's certificate can verify");
    }
    let _ = req.check_ttl(now_ms());
    let node = Node::web();
    let direct = mco_core::subject::node(&req.collective, &node.identity);
    let broadcast = mco_core::subject::broadcast(&req.collective, &req.agent);
    for subject in [direct.as_str(), broadcast.as_str()] {
        for reply in [req.reply_to.as_deref(), Some("elsewhere"), None] {
            let delivery = mco_core::binding::Delivery {
                subject,
                reply,
                identity: &node.identity,
            };
            if let Ok(to) = req.check_binding(&delivery) {
                // Accepted only as signed: to the signed reply subject, on
                // the subject its target uses, for a node it names.
                assert_eq!(Some(to), reply);
                assert_eq!(req.reply_to.as_deref(), Some(to));
                match &req.target {
                    Some(mco_core::Target::Broadcast) => assert_eq!(subject, broadcast),
                    Some(mco_core::Target::Nodes(ids)) => {
                        assert_eq!(subject, direct);
                        assert!(ids.contains(&node.identity));
                    }
                    None => panic!("an unbound request passed the binding check"),
                }
            }
        }
    }
    if let Ok(filter) = req.filter.compile() {
        filter.matches(&Node::web());
    }
    if let Some(action) = shipped_ddls()
        .iter()
        .find(|d| d.metadata.name == req.agent)
        .and_then(|d| d.action(&req.action))
    {
        let mut data = req.data.clone();
        let _ = action.validate(&mut data);
    }
}
