//! Writes the fixture CA (`fixtures/ca`, only if it is missing) and every
//! target's seed corpus (`seeds/<target>/`): a handful of valid inputs
//! each, built with the project's own encoders so they stay true to the
//! formats. Run from `fuzz/` after a format changes:
//!
//! ```text
//! cargo +nightly run --example make_seeds
//! ```

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use mco_client::pins::render_pins;
use mco_core::filter::{FactTerm, Filter};
use mco_core::wire::{new_request_id, now_ms, Envelope, Kind, ReplyBody, RequestBody, Status};
use mco_fuzz::{pem_der, pki, NODE_NAME};
use mco_pki::{request_csr, Ca, CaOptions, CrlOptions, CsrOptions, IssueOptions, Kind as PkiKind};
use mco_provisioner::state::{Journal, Record, Status as ProvStatus};
use serde_json::json;

/// The secret the known_certs target authenticates its files with.
const KNOWN_SECRET: [u8; 32] = [7; 32];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = mco_fuzz::fixture_ca_dir();
    if !fixture.join("ca.pem").exists() {
        let opts = CaOptions {
            common_name: "mco fuzzing CA (test only)".into(),
            validity_days: 36_500,
            force: false,
        };
        Ca::init(&fixture, &opts).expect("the fixture CA");
    }
    let seeds = root.join("seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };
    let cat = |parts: &[&[u8]]| -> Vec<u8> { parts.concat() };
    let pki = pki();

    // wire_request: whole messages (shape 0) and bodies to seal (shape 1).
    for (name, req) in requests() {
        let body = req.encode();
        put(
            "wire_request",
            &format!("{name}-body"),
            &cat(&[&[1], &body]),
        );
        let sealed = pki.user.seal(Kind::Request, body.clone()).encode();
        put(
            "wire_request",
            &format!("{name}-signed"),
            &cat(&[&[0], &sealed]),
        );
    }
    // Bound requests: for the fuzzing node by name, and as a broadcast.
    let node = mco_fuzz::Node::web().identity;
    for (name, target) in [
        ("ping-bound-node-body", mco_core::Target::Nodes(vec![node])),
        ("ping-bound-broadcast-body", mco_core::Target::Broadcast),
    ] {
        let mut req = requests()[0].1.clone();
        req.bind(target);
        put("wire_request", name, &cat(&[&[1], &req.encode()]));
    }
    let unsigned = Envelope::unsigned(Kind::Request, requests()[0].1.encode()).encode();
    put("wire_request", "ping-unsigned", &cat(&[&[0], &unsigned]));

    // wire_reply: whole replies (0), bodies sealed by a certificate (1) or a node key (2).
    for (name, reply) in replies() {
        let body = reply.encode();
        put(
            "wire_reply",
            &format!("{name}-body-cert"),
            &cat(&[&[1], &body]),
        );
        put(
            "wire_reply",
            &format!("{name}-body-key"),
            &cat(&[&[2], &body]),
        );
        let sealed = pki.node.seal(Kind::Reply, body.clone()).encode();
        put(
            "wire_reply",
            &format!("{name}-signed"),
            &cat(&[&[0], &sealed]),
        );
        let keyed = pki.node_key.seal_with_key(Kind::Reply, body).encode();
        put(
            "wire_reply",
            &format!("{name}-keysigned"),
            &cat(&[&[0], &keyed]),
        );
    }

    // pki_cert: certificates as DER.
    put("pki_cert", "user.der", &pki.user_cert_der);
    let node_pem = fs::read_to_string(pki.ca_dir().join(format!("{NODE_NAME}.pem"))).unwrap();
    put("pki_cert", "node.der", &pem_der(&node_pem));
    put("pki_cert", "ca.der", pki.ca.cert_der());

    // pki_csr: requests as DER (0) and PEM text (1).
    let tmp = tempfile::tempdir().unwrap();
    let user = request_csr(tmp.path(), "carol", PkiKind::User, &CsrOptions::default()).unwrap();
    let node_opts = CsrOptions {
        dns: vec!["db.example.net".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
        ..CsrOptions::default()
    };
    let node = request_csr(tmp.path(), "db-01.example.net", PkiKind::Node, &node_opts).unwrap();
    for (name, csr) in [("user", &user.csr_pem), ("node", &node.csr_pem)] {
        put(
            "pki_csr",
            &format!("{name}.der"),
            &cat(&[&[0], &pem_der(csr)]),
        );
        put(
            "pki_csr",
            &format!("{name}.pem"),
            &cat(&[&[1], csr.as_bytes()]),
        );
    }

    // pki_crl: CRLs of the fixture CA, empty and with a revoked certificate.
    let far = CrlOptions {
        next_update_days: 36_500,
    };
    let empty = pki.ca.crl(&far).unwrap();
    put("pki_crl", "empty.pem", empty.as_bytes());
    put("pki_crl", "empty.der", &pem_der(&empty));
    pki.ca
        .issue("bob", PkiKind::User, &IssueOptions::default())
        .unwrap();
    pki.ca.revoke("bob").unwrap();
    let one = pki.ca.crl(&far).unwrap();
    put("pki_crl", "revoked.pem", one.as_bytes());
    put("pki_crl", "revoked.der", &pem_der(&one));

    // filter_compound.
    for (i, e) in [
        "role=web",
        "role=web and country=fr",
        "(role=web or role=db) and not country=de",
        "!cpus<4 and os.family=Debian",
        "/^role::/ or nginx",
        "cpus>=4 and version>1.9 and os.release.major=12",
        "identity(\"web-*\") and agent(rpcutil) and class(/base/)",
        "fact(\"dotted.key=yes\") or not (enabled=false)",
        "tags=~/^a$/ and load<1.5",
    ]
    .iter()
    .enumerate()
    {
        put("filter_compound", &format!("expr{i}"), e.as_bytes());
    }

    // filter_fact.
    put(
        "filter_fact",
        "mixed",
        b"Wrole=web\nWnginx\nWcpus >= 4\nIweb-*\nI/^db/\nCbase::users\nA/^rpc/\nFos.family\t0\tDebian\nFversion\t3\t1.9\nV1.9.0\n",
    );
    put(
        "filter_fact",
        "regex",
        b"Wcountry=~/^f/\nWversion<=2.0\nFtags\t6\t/a|b/\nV1.10.2-rc1\n",
    );
    put(
        "filter_fact",
        "identity",
        b"Iweb-01.example.net\nAnrpe\nCnginx\nV10\n",
    );

    // ddl_load: every shipped DDL, with some inputs for its actions.
    for path in mco_fuzz::ddl_files() {
        let text = fs::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let inputs =
            br#"{"fact":"os.family","command":"check_load","type":"file","name":"/tmp/x"}"#;
        put("ddl_load", &name, &cat(&[&text, &[0], inputs]));
    }

    // ddl_validate: header (DDL, action, msgpack?), data, argument, validator, sample.
    let ddls = mco_fuzz::shipped_ddls();
    let index = |agent: &str| ddls.iter().position(|d| d.metadata.name == agent).unwrap() as u8;
    let action = |agent: &str, act: &str| {
        ddls[index(agent) as usize]
            .actions
            .iter()
            .position(|a| a.action == act)
            .unwrap() as u8
    };
    let validate = [
        (
            "rpcutil",
            "get_fact",
            json!({"fact": "os.family"}),
            "os.release",
            "shellsafe",
            "a b",
        ),
        (
            "nrpe",
            "runcommand",
            json!({"command": "check_load", "args": "-w 5!-c 10"}),
            "check_disk",
            "^[a-z_]+$",
            "check_load",
        ),
        (
            "resource",
            "do",
            json!({"type": "file", "name": "/tmp/x", "ensure": "present", "content": "hi\n", "mode": "0644"}),
            "0600",
            "ipv4address",
            "10.0.0.1",
        ),
        (
            "provision",
            "configure",
            json!({"token": "t", "certificate": "-----BEGIN", "servers": "nats://x:4222"}),
            "true",
            "ipaddress",
            "::1",
        ),
        (
            "ca",
            "sign",
            json!({"name": "web-02.example.net", "csr": "-----BEGIN CERTIFICATE REQUEST-----"}),
            "node",
            "/^\\w+$/",
            "x",
        ),
    ];
    for (agent, act, data, arg, validator, sample) in validate {
        let head = [index(agent), action(agent, act)];
        let json_data = serde_json::to_vec(&data).unwrap();
        let tail = cat(&[
            &[0],
            arg.as_bytes(),
            &[0],
            validator.as_bytes(),
            &[0],
            sample.as_bytes(),
        ]);
        put(
            "ddl_validate",
            &format!("{agent}-{act}-json"),
            &cat(&[&head, &[0], &json_data, &tail]),
        );
        let packed = rmp_serde::to_vec_named(&data).unwrap();
        put(
            "ddl_validate",
            &format!("{agent}-{act}-msgpack"),
            &cat(&[&head, &[1], &packed, &tail]),
        );
    }

    // policy: a policy, NUL, a groups file.
    let policies: [(&str, &str, &str); 3] = [
        (
            "tabs",
            "policy default deny\nallow\tuser:alice ops\t*\t*\nallow\t*\tstatus\trole=web and country=fr\ndeny\tuser:mallory\trestart\t*\tnginx\n",
            "ops user:bob node:web-01.example.net\nadmins user:alice\n",
        ),
        (
            "spaces",
            "# edited with spaces\npolicy default allow\ndeny  user:mallory  *  *\nallow  admins  restart status  os.family=Debian cpus>=4  nginx base::users\n",
            "admins user:alice user:carol\n",
        ),
        (
            "compound",
            "allow\t*\tping\t(role=web or role=db) and not country=de\t/^role::/ or nginx\n",
            "",
        ),
    ];
    for (name, policy, groups) in policies {
        put(
            "policy",
            name,
            &cat(&[policy.as_bytes(), &[0], groups.as_bytes()]),
        );
    }

    // nrpe_cfg: flags, args, then nrpe.cfg, nrpe.d/a.cfg, nrpe.d/b.cfg,
    // nrpe.d/sub/c.cfg, inc/d.cfg, inc/e.txt, other.cfg.
    let nrpe: [(&str, u8, &[&str]); 3] = [
        (
            "plain",
            0,
            &["-w 5!-c 10", "server_port=5666\ncommand[check_load]=/usr/lib/nagios/plugins/check_load -w $ARG1$ -c $ARG2$\ncommand[check_disk]=/usr/lib/nagios/plugins/check_disk -w 20% -c 10% -p /\n"],
        ),
        (
            "includes",
            1,
            &[
                "5!10",
                "include=other.cfg\ninclude_dir=inc\ncommand[check_users]=check_users -w $ARG1$ -c $ARG2$\n",
                "command[a]='/bin/check a' \"$ARG1$\"\n",
                "command[b]=check_b | tee /tmp/b\n",
                "command[c]=check_c\\ d $ARG2$\ninclude=../other.cfg\n",
                "command[d]=check_d -H 127.0.0.1\n",
                "command[e]=not read\n",
                "command[check_load]=check_load -r -w $ARG1$\ninclude=nrpe.cfg\n",
            ],
        ),
        ("shell", 0, &["a b!c", "command[sh]=echo \"$ARG1$\" > /dev/null; exit 0\ncommand[q]=check 'x y' $ARG1$\n"]),
    ];
    for (name, flags, parts) in nrpe {
        let mut bytes = vec![flags];
        bytes.extend(parts.join("\0").as_bytes());
        put("nrpe_cfg", name, &bytes);
    }

    // facts_file: extension index (json, yaml, yml, txt, JSON), then content.
    put("facts_file", "facts.json", &cat(&[&[0], br#"{"role":"web","cpus":8,"os":{"family":"Debian","release":{"major":12}},"tags":["a","b"],"dotted.key":true,"none":null}"#]));
    put("facts_file", "facts.yaml", &cat(&[&[1], b"role: web\ncpus: 8\nos:\n  family: Debian\n  release: {major: 12}\ntags: [a, b]\n1: one\ntrue: yes\n"]));
    put("facts_file", "merge.yml", &cat(&[&[2], b"base: &base\n  dc: par1\n  rack: 4\nnode:\n  <<: *base\n  rack: 5\nnan: .nan\ninf: -.inf\ntagged: !custom 3\n"]));
    put(
        "facts_file",
        "guess.txt",
        &cat(&[&[3], b"# only a comment\n"]),
    );
    put(
        "facts_file",
        "classes.txt",
        &cat(&[&[3], b"nginx\nbase::users\n\n# comment\nnginx\n"]),
    );

    // boot_facts: a file's bytes, given to the key=value, one-value and user-data parsers.
    put("boot_facts", "facts.txt", b"# written by ec2-boot-init\nrole=web\n region = eu-west-1 \r\nurl=http://x/?a=b\nempty=\nbad line\nmy key=x\nrole=db\n");
    put("boot_facts", "role", b"web\n");
    put("boot_facts", "cloud-config", b"#cloud-config\npackages: [nginx]\nbase: &b {dc: par1}\nfacts:\n  role: web\n  cpus: 8\n  tags: [a, b]\n  location:\n    <<: *b\n    rack: 4\n");
    put(
        "boot_facts",
        "ruby-symbols",
        b"---\n:facts:\n  role: db\n  cluster: alpha\n",
    );
    put(
        "boot_facts",
        "script",
        b"#!/bin/sh\necho 'facts: {role: web}'\n",
    );

    // config: which (responder, client, provisioner, duration), then text.
    put("config", "responder", &cat(&[&[0], RESPONDER.as_bytes()]));
    put("config", "client", &cat(&[&[1], CLIENT.as_bytes()]));
    put(
        "config",
        "provisioner",
        &cat(&[&[2], PROVISIONER.as_bytes()]),
    );
    for (i, d) in ["10s", "1.5s", "300ms", "5m", "7"].iter().enumerate() {
        put(
            "config",
            &format!("duration{i}"),
            &cat(&[&[3], d.as_bytes()]),
        );
    }

    // known_certs: files as a store exports them, without their HMAC.
    let trust = mco_security::TrustStore::load(&pki.ca_path, None).unwrap();
    let empty = trust.export_known(&KNOWN_SECRET, 0);
    put("known_certs", "empty", &empty[..empty.len() - 32]);
    for env in [
        pki.user.seal(Kind::Request, b"x".to_vec()),
        pki.node.seal(Kind::Reply, b"y".to_vec()),
    ] {
        trust.verify(&env, mco_fuzz::now_s()).unwrap();
    }
    let two = trust.export_known(&KNOWN_SECRET, 0);
    put("known_certs", "two", &two[..two.len() - 32]);

    // pins.
    let mut pins = std::collections::BTreeMap::new();
    pins.insert("web-01.example.net".to_string(), pki.node_key.public_key());
    pins.insert("db-01.example.net".to_string(), [9u8; 32]);
    put("pins", "two", render_pins(&pins).as_bytes());
    put("pins", "comments", b"# pins\n\n  # indented comment\nweb-02 0000000000000000000000000000000000000000000000000000000000000000\n");

    // journal: written by the journal itself, then a torn last line.
    let path = tmp.path().join("provisioner.journal");
    {
        let mut j = Journal::open(&path).unwrap();
        let mut r = Record::new(now_ms());
        j.put("web-01.example.net", r.clone(), false).unwrap();
        r.status = ProvStatus::Provisioned;
        r.step = Some(mco_provisioner::step::Step::Configure);
        r.master = Some("puppet-1".into());
        r.certificate = Some(node_pem.clone());
        r.attempts = 1;
        j.put("web-01.example.net", r.clone(), true).unwrap();
        r.status = ProvStatus::Failed;
        r.error = Some("timed out".into());
        r.retry_at_ms = now_ms() + 60_000;
        j.put("db-01.example.net", r, false).unwrap();
    }
    let journal = fs::read(&path).unwrap();
    put("journal", "three", &journal);
    let torn = cat(&[&journal, br#"{"node":"x","status":"in_pro"#]);
    put("journal", "torn", &torn);

    // inventory_entry: `KEY\nVALUE`, the value an entry as a responder writes it.
    let body = mco_core::inventory::InventoryBody {
        identity: "n1".into(),
        collectives: vec!["mcollective".into()],
        facts: serde_json::from_value(json!({"role": "web", "os": {"family": "Debian"}})).unwrap(),
        classes: vec!["web".into(), "base".into()],
        agents: vec!["rpcutil".into(), "nrpe".into()],
        version: "0.1.0".into(),
        time_ms: now_ms(),
        interval_s: 60,
        crl: Some("7".into()),
    };
    let unsigned = Envelope::unsigned(Kind::Inventory, body.encode()).encode();
    put(
        "inventory_entry",
        "n1-unsigned",
        &cat(&[b"n1\n", &unsigned]),
    );
    put("inventory_entry", "other-key", &cat(&[b"n2\n", &unsigned]));
    let signed = pki.user.seal(Kind::Inventory, body.encode()).encode();
    put("inventory_entry", "n1-signed", &cat(&[b"n1\n", &signed]));
    put("inventory_entry", "bare-body", &body.encode());
    println!("seeds written to {}", seeds.display());
}

fn request(agent: &str, action: &str, data: serde_json::Value, filter: Filter) -> RequestBody {
    RequestBody {
        id: new_request_id(),
        sender: "admin.example.net".into(),
        caller: "user:alice".into(),
        collective: "mcollective".into(),
        agent: agent.into(),
        action: action.into(),
        data: data.as_object().cloned().unwrap_or_default(),
        filter,
        ttl_s: 60,
        time_ms: now_ms(),
        target: None,
        reply_to: None,
    }
}

fn requests() -> Vec<(&'static str, RequestBody)> {
    let filter = Filter {
        identity: vec!["web-*".into(), "/^db/".into()],
        fact: vec![FactTerm::parse("cpus>=4").unwrap()],
        class: vec!["nginx".into()],
        agent: vec!["rpcutil".into()],
        compound: vec!["role=web and (country=fr or not cpus<4)".into()],
    };
    vec![
        (
            "ping",
            request("rpcutil", "ping", json!({}), Filter::default()),
        ),
        (
            "get-fact",
            request("rpcutil", "get_fact", json!({"fact": "os.family"}), filter),
        ),
        (
            "nrpe",
            request(
                "nrpe",
                "runcommand",
                json!({"command": "check_load", "args": "-w 5!-c 10"}),
                Filter::default(),
            ),
        ),
        (
            "resource",
            request(
                "resource",
                "do",
                json!({"type": "file", "name": "/tmp/x", "ensure": "present", "content": "hi\n"}),
                Filter {
                    compound: vec!["os.family=Debian and not /^db/".into()],
                    ..Filter::default()
                },
            ),
        ),
    ]
}

fn replies() -> Vec<(&'static str, ReplyBody)> {
    let reply = |status: Status, message: &str, data: serde_json::Value| ReplyBody {
        request_id: new_request_id(),
        sender: NODE_NAME.into(),
        status,
        message: message.into(),
        data: data.as_object().cloned().unwrap_or_default(),
        time_ms: now_ms(),
        elapsed_us: 1234,
    };
    vec![
        (
            "pong",
            reply(Status::Ok, "OK", json!({"pong": 1_700_000_000_000u64})),
        ),
        (
            "inventory",
            reply(
                Status::Ok,
                "OK",
                json!({"agents": ["rpcutil"], "facts": {"os": {"family": "Debian"}}, "uptime": 12, "load": 0.5}),
            ),
        ),
        (
            "aborted",
            reply(Status::Aborted, "not authorized", json!({})),
        ),
    ]
}

const RESPONDER: &str = r#"identity = "web-01.example.net"
collectives = ["mcollective", "eu"]
[nats]
servers = ["nats://127.0.0.1:4222"]
[facts]
files = ["/etc/mco/facts.yaml", "/etc/mco/facts.d/extra.json"]
commands = []
classes_file = "/var/lib/puppet/state/classes.txt"
refresh = "5m"
keyvalue_files = ["/etc/facts.txt"]
value_files = { role = "/etc/role" }
userdata_files = ["/var/lib/cloud/instance/user-data.txt"]
[agents]
enabled = ["rpcutil", "resource", "nrpe"]
ddl_dirs = []
[security]
ca = "/etc/mco/ssl/ca.pem"
cert = "/etc/mco/ssl/node.pem"
key = "/etc/mco/ssl/node.key"
crl = "/etc/mco/ssl/ca.crl"
insecure = false
policy_dir = "/etc/mco/policies"
default_policy = "deny"
audit_log = "/var/log/mco/audit.jsonl"
[plugin.nrpe]
conf_dir = "nrpe.d"
conf_files = ["/etc/nagios/nrpe.cfg"]
timeout = "10s"
"#;

const CLIENT: &str = r#"identity = "admin.example.net"
collective = "mcollective"
[nats]
servers = ["tls://nats.example.net:4222"]
[security]
ca = "~/.config/mco/ca.pem"
cert = "~/.config/mco/alice.pem"
key = "~/.config/mco/alice.key"
"#;

const PROVISIONER: &str = r#"main_config = "main.toml"
provisioning_config = "/etc/mco/prov.toml"
workers = 8
backoff = "2s"
max_backoff = "10s"
metrics_listen = "127.0.0.1:9464"
[expected]
identities = ["web-*"]
registry_file = "expected.txt"
[masters]
classes = ["puppet::master"]
facts = ["role=master"]
criteria = ["datacenter", "region"]
servers_fact = "mco_servers"
[steps]
final_run = true
[[notify]]
type = "webhook"
url = "http://127.0.0.1:8080/hook"
[[notify]]
type = "exec"
command = ["logger", "-t", "mco"]
"#;
