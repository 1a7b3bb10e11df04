//! The client's path for replies from the bus: `Envelope::decode` as a
//! reply, `Envelope::reply`, then the client's `Opener` — alone
//! (`TrustStore::verify`), in a batch (`TrustStore::verify_many`) and, for
//! the provisioning collective, with key pins (`verify_key_signed`,
//! `KeyPins::check`).
//!
//! The first byte picks the shape: 0 mod 3, the rest is a whole message;
//! 1, the rest is a reply body sealed by a valid node certificate; 2, a
//! reply body signed by a provisioning-mode node key.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mco_client::pins::KeyPins;
use mco_client::verify::Opener;
use mco_core::wire::{Kind, ReplyBody, Status, DEFAULT_MAX_PAYLOAD};
use mco_fuzz::{on_worker_stack, pki, NODE_NAME};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let pki = pki();
    let payload = match shape % 3 {
        0 => rest.to_vec(),
        1 => pki.node.seal(Kind::Reply, rest.to_vec()).encode(),
        _ => pki
            .node_key
            .seal_with_key(Kind::Reply, rest.to_vec())
            .encode(),
    };
    on_worker_stack(|| client(&payload));
});

fn client(payload: &[u8]) {
    let pki = pki();
    let trust = Arc::new(mco_security::TrustStore::load(&pki.ca_path, None).unwrap());
    let plain = Opener {
        trust: Some(trust.clone()),
        max_payload: DEFAULT_MAX_PAYLOAD,
        pins: None,
    };
    let pinned = Opener {
        trust: Some(trust),
        max_payload: DEFAULT_MAX_PAYLOAD,
        pins: Some(Arc::new(KeyPins::in_memory())),
    };
    let one = plain.open(payload);
    if let Ok(reply) = &one {
        assert_eq!(
            reply.sender, NODE_NAME,
            "only the node's certificate verifies"
        );
        let again = mco_core::wire::Envelope::unsigned(Kind::Reply, reply.encode());
        assert!(again.reply().is_ok(), "an accepted reply re-encodes");
    }
    let _ = pinned.open(payload);
    // A batch: this payload beside a good reply, which must stay good
    // whatever its neighbour is.
    let good = pki.node.seal(Kind::Reply, good_reply().encode()).encode();
    let many = plain.open_many(&[payload.to_vec().into(), good.clone().into(), good.into()]);
    assert_eq!(many.len(), 3);
    assert_eq!(
        many[0].is_ok(),
        one.is_ok(),
        "a batch decides as one by one"
    );
    assert!(
        many[1].is_ok() && many[2].is_ok(),
        "a bad neighbour condemned a good reply"
    );
}

fn good_reply() -> ReplyBody {
    ReplyBody {
        request_id: "01hzzzzzzzzzzzzzzzzzzzzzzz".into(),
        sender: NODE_NAME.into(),
        status: Status::Ok,
        message: "OK".into(),
        data: Default::default(),
        time_ms: mco_core::wire::now_ms(),
        elapsed_us: 1,
    }
}
