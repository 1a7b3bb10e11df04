//! Tests of the single-server broker configuration.

use super::*;

fn opts() -> BrokerOptions {
    BrokerOptions {
        server_cert: "/pki/broker.pem".into(),
        server_key: "/pki/broker.key".into(),
        collectives: vec!["mcollective".into()],
        nodes: vec!["web1".into()],
        users: vec!["alice".into()],
        ..BrokerOptions::default()
    }
}

#[test]
fn only_registry_users_reach_the_registry_bucket_and_only_it() {
    let o = BrokerOptions {
        users: vec!["alice".into(), "bob".into()],
        registry: Some(RegistryOptions {
            bucket: "expected".into(),
            users: vec!["alice".into()],
            store_dir: "/var/lib/nats".into(),
        }),
        ..opts()
    };
    let text = broker_config(Path::new("/pki"), &o).unwrap();
    assert!(
        text.contains("jetstream {\n  store_dir: \"/var/lib/nats\"\n}"),
        "{text}"
    );
    let entry = |who: &str| {
        let start = text.find(&format!("user: \"CN=user:{who}\"")).unwrap();
        let end = text[start..].find("    }").unwrap() + start;
        text[start..end].to_string()
    };
    let alice = entry("alice");
    assert!(alice.contains("\"$KV.expected.>\""), "{alice}");
    assert!(
        alice.contains("\"$JS.API.STREAM.INFO.KV_expected\""),
        "{alice}"
    );
    assert!(alice.contains("\"_INBOX.>\""), "{alice}");
    // No other bucket, no stream or consumer of anything else, no wildcard over the API.
    assert!(!alice.contains("$JS.API.>"), "{alice}");
    assert!(!alice.contains("$KV.>"), "{alice}");
    let bob = entry("bob");
    assert!(
        !bob.contains("$KV") && !bob.contains("$JS") && !bob.contains("_INBOX"),
        "{bob}"
    );
    let web1 = entry_node(&text, "web1");
    assert!(!web1.contains("$KV") && !web1.contains("$JS"), "{web1}");

    let mut bad = o.clone();
    bad.registry.as_mut().unwrap().users = vec!["mallory".into()];
    assert!(broker_config(Path::new("/pki"), &bad).is_err());
    let mut bad = o.clone();
    bad.registry.as_mut().unwrap().bucket = "a.b".into();
    assert!(broker_config(Path::new("/pki"), &bad).is_err());
}

fn entry_node(text: &str, node: &str) -> String {
    let start = text.find(&format!("user: \"CN=node:{node}\"")).unwrap();
    let end = text[start..].find("    }").unwrap() + start;
    text[start..end].to_string()
}

#[test]
fn responders_can_be_confined_to_their_agents_broadcasts() {
    let o = BrokerOptions {
        agents: vec!["rpcutil".into(), "nrpe".into()],
        ..opts()
    };
    let text = broker_config(Path::new("/pki"), &o).unwrap();
    assert!(
        text.contains(
            "subscribe: { allow: [\"mcollective.node.web1\", \"mcollective.broadcast.agent.rpcutil\", \"mcollective.broadcast.agent.nrpe\"] }"
        ),
        "{text}"
    );
    assert!(!text.contains(
        "subscribe: { allow: [\"mcollective.node.web1\", \"mcollective.broadcast.agent.>\""
    ));
}

#[test]
fn writes_tls_and_per_identity_permissions() {
    let text = broker_config(Path::new("/pki"), &opts()).unwrap();
    assert!(text.contains("listen: \"127.0.0.1:4222\""), "{text}");
    assert!(text.contains("ca_file: \"/pki/ca.pem\""), "{text}");
    assert!(text.contains("cert_file: \"/pki/broker.pem\""), "{text}");
    assert!(text.contains("key_file: \"/pki/broker.key\""), "{text}");
    assert!(text.contains("verify_and_map: true"), "{text}");
    assert!(text.contains("--signal reload"), "{text}");
    assert!(text.contains("user: \"CN=node:web1\""), "{text}");
    assert!(text.contains("user: \"CN=user:alice\""), "{text}");
    assert!(text.contains(
        "publish: { allow: [\"mcollective.reply.>\", \"mcollective.registration.web1\"] }"
    ));
    assert!(text.contains(
        "subscribe: { allow: [\"mcollective.node.web1\", \"mcollective.broadcast.agent.>\"] }"
    ));
    let own = subject::reply_wildcard("mcollective", "user:alice");
    assert!(
        text.contains(&format!("subscribe: {{ allow: [\"{own}\"] }}")),
        "{text}"
    );
    assert!(text.contains(
        "publish: { allow: [\"mcollective.broadcast.agent.>\", \"mcollective.node.>\"] }"
    ));
    assert!(!text.contains("_INBOX"), "{text}");
}

#[test]
fn pins_go_into_the_tls_block() {
    let pin = "ab".repeat(32);
    let o = BrokerOptions {
        pinned_keys: vec![pin.clone(), pin.clone()],
        ..opts()
    };
    let text = broker_config(Path::new("/pki"), &o).unwrap();
    let tls = &text[text.find("tls {").unwrap()..text.find("authorization").unwrap()];
    assert!(tls.contains("pinned_certs: ["), "{text}");
    assert_eq!(tls.matches(&pin).count(), 1, "{text}");
    assert!(!broker_config(Path::new("/pki"), &opts())
        .unwrap()
        .contains("pinned_certs"));
    let bad_pin = BrokerOptions {
        pinned_keys: vec!["AB\"]".into()],
        ..opts()
    };
    assert!(matches!(
        broker_config(Path::new("/pki"), &bad_pin),
        Err(PkiError::BadBrokerOption(_))
    ));
}

#[test]
fn live_pins_leave_out_revoked_expired_and_brokers() {
    use crate::{Ca, CaOptions, IssueOptions};
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
    let pin_of = |pem: &str| {
        let der = pem_contents(pem, &["CERTIFICATE"]).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        key_pin(cert.tbs_certificate.subject_pki.raw)
    };
    let broker = ca
        .issue("nats1", Kind::Broker, &IssueOptions::default())
        .unwrap();
    let alice = ca
        .issue("alice", Kind::User, &IssueOptions::default())
        .unwrap();
    let old = ca
        .issue("web1", Kind::Node, &IssueOptions::default())
        .unwrap();
    ca.revoke("web1").unwrap();
    let forced = IssueOptions {
        force: true,
        ..IssueOptions::default()
    };
    let new = ca.issue("web1", Kind::Node, &forced).unwrap();
    let now = crate::index::unix_now();
    let mut want = vec![pin_of(&alice.cert_pem), pin_of(&new.cert_pem)];
    want.sort();
    assert_eq!(live_pins(tmp.path(), now).unwrap(), want);
    assert!(!want.contains(&pin_of(&old.cert_pem)));
    assert!(!want.contains(&pin_of(&broker.cert_pem)));

    // An entry from before pins were recorded: pinned from NAME.pem when it is the same
    // certificate, refused otherwise.
    let mut index = Index::load(tmp.path()).unwrap();
    for e in &mut index.certs {
        e.key_sha256 = None;
    }
    index.save(tmp.path()).unwrap();
    assert_eq!(live_pins(tmp.path(), now).unwrap(), want);
    std::fs::write(tmp.path().join("alice.pem"), &new.cert_pem).unwrap();
    assert!(matches!(
        live_pins(tmp.path(), now),
        Err(PkiError::BadBrokerOption(_))
    ));
}

#[test]
fn only_broker_certificates_may_serve() {
    use crate::{Ca, CaOptions, IssueOptions};
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
    let broker = ca
        .issue("nats1", Kind::Broker, &IssueOptions::default())
        .unwrap();
    check_server_cert(&broker.cert_pem).unwrap();
    for (name, kind) in [("web1", Kind::Node), ("alice", Kind::User)] {
        let cert = ca.issue(name, kind, &IssueOptions::default()).unwrap();
        let err = check_server_cert(&cert.cert_pem).unwrap_err();
        assert!(
            err.to_string().contains("not a broker certificate"),
            "{err}"
        );
    }
    assert!(check_server_cert("junk").is_err());
}

#[test]
fn every_collective_gets_its_subjects() {
    let o = BrokerOptions {
        collectives: vec!["eu".into(), "us".into()],
        ..opts()
    };
    let text = broker_config(Path::new("/pki"), &o).unwrap();
    for c in ["eu", "us"] {
        assert!(text.contains(&format!("\"{c}.node.web1\"")), "{text}");
        let own = subject::reply_wildcard(c, "user:alice");
        assert!(text.contains(&own), "{text}");
    }
}

#[test]
fn refuses_unusable_options() {
    let cases = [
        BrokerOptions {
            collectives: Vec::new(),
            ..opts()
        },
        BrokerOptions {
            collectives: vec!["a.b".into()],
            ..opts()
        },
        BrokerOptions {
            nodes: Vec::new(),
            users: Vec::new(),
            ..opts()
        },
        BrokerOptions {
            server_cert: "/pki/\"x.pem".into(),
            ..opts()
        },
        BrokerOptions {
            listen: String::new(),
            ..opts()
        },
    ];
    for o in cases {
        let err = broker_config(Path::new("/pki"), &o).unwrap_err();
        assert!(matches!(err, PkiError::BadBrokerOption(_)), "{o:?}: {err}");
    }
    let bad_name = BrokerOptions {
        users: vec!["al\"ice".into()],
        ..opts()
    };
    assert!(matches!(
        broker_config(Path::new("/pki"), &bad_name),
        Err(PkiError::InvalidName { .. })
    ));
}
