//! The provisioner service end to end: real responders booted from provisioning images, a real
//! CA node, masters discovered by class, and `mco provision run` driving them all until every
//! expected node answers signed RPC in the main collective.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use mco_core::wire::Kind;
use mco_security::{Credentials, TrustStore};
use mco_tests::provisioning::{
    ca_node, issued, master, master_with, provisioning_broker, Image, Provisioner, Webhook,
};
use mco_tests::replies::replies;
use mco_tests::{eventually, Responder, SecureCollective};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

/// The port the provisioner serves its counters on, from its log (it binds port 0).
fn metrics_port(p: &Provisioner) -> u16 {
    let mut port = 0;
    eventually(LONG, "the provisioner to serve its counters", || {
        let log = p.child.stderr_text();
        port = log
            .split("serving counters on http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        port != 0
    });
    port
}

/// The response to a GET, or an empty string if there was none.
fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let mut out = String::new();
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .is_err()
        || s.read_to_string(&mut out).is_err()
    {
        return String::new();
    }
    out
}

/// The certificate the node was configured with verifies against the collective's CA and
/// matches the key its gencsr made.
#[track_caller]
fn certificate_verifies(c: &SecureCollective, img: &Image, identity: &str) {
    let creds = Credentials::load(&img.dir.join("ssl/node.pem"), &img.dir.join("ssl/node.key"))
        .expect("the node's certificate and key load");
    assert_eq!(creds.name(), format!("node:{identity}"));
    let trust = TrustStore::load(&c.pki_dir().join("ca.pem"), None).unwrap();
    let sealed = creds.seal(Kind::Reply, b"probe".to_vec());
    let now = (mco_core::wire::now_ms() / 1000) as i64;
    trust
        .verify(&sealed, now)
        .expect("the certificate chains to the CA");
}

#[test]
fn fifty_nodes_in_three_regions_each_get_a_master_of_their_region() {
    let regions = ["eu", "us", "ap"];
    let nodes: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("node-{i:02}"), regions[i % 3]))
        .collect();
    let mut b = SecureCollective::builder().spare_node("ca-node");
    for (n, _) in &nodes {
        b = b.spare_node(n);
    }
    let masters: Vec<(String, &str, String)> = regions
        .iter()
        .enumerate()
        .flat_map(|(r, region)| {
            (1..=2).map(move |m| (format!("m-{region}-{m}"), *region, format!("10.{r}.0.{m}")))
        })
        .collect();
    for (m, _, _) in &masters {
        b = b.spare_node(m);
    }
    // A node of the collective that claims to be the least loaded master of eu: it is not
    // among the names `[masters] identities` gives, so no node may get it.
    b = b.spare_node("evil-master");
    let c = b.start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c, &["node-*"], "alice");
    let _masters: Vec<Responder> = masters
        .iter()
        .map(|(m, region, ip)| master(&c, m, region, ip, 5))
        .chain([master(&c, "evil-master", "eu", "10.9.9.9", 0)])
        .collect();

    let images: Vec<(String, &str, Image)> = nodes
        .iter()
        .map(|(n, region)| {
            let marker = c.scratch().join(n).join("final-ran");
            let img = Image::new(
                &c,
                &prov,
                n,
                json!({"region": region}),
                r#"["sh", "-c", "echo Notice: bootstrap applied; exit 2"]"#,
                &format!(r#"["sh", "-c", "echo final > {}"]"#, s(&marker)),
            );
            (n.clone(), *region, img)
        })
        .collect();
    let rogue = Image::new(&c, &prov, "rogue-01", json!({"region": "eu"}), "[]", "[]");
    let hook = Webhook::start();
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        &format!(
            "workers = 16\ninterval = \"1s\"\nbackoff = \"1s\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [expected]\nidentities = [\"node-*\"]\n\
             [ca]\nidentities = [\"ca-*\"]\n\
             [masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\ncriteria = [\"region\"]\n\
             [steps]\nfinal_run = true\n\
             [[notify]]\ntype = \"webhook\"\nurl = {url:?}\n[[notify]]\ntype = \"log\"\n",
            url = hook.url
        ),
    );
    let mut p = Provisioner::start(&cfg);
    let mut booted: Vec<Responder> = images.iter().map(|(_, _, img)| img.boot(&c)).collect();
    booted.push(rogue.boot(&c));

    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(LONG, "all fifty nodes provisioned", || {
            assert!(p.child.is_running(), "the provisioner exited");
            Provisioner::count(&cfg, "provisioned") == 50
        })
    }));
    if done.is_err() {
        let log = p.child.stderr_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "not all provisioned: {:#?}\nprovisioner log (last lines, newest first):\n{}\nnode-00 log:\n{}",
            Provisioner::status(&cfg),
            tail.join("\n"),
            booted[0].child.stderr_text()
        );
    }
    eventually(LONG, "the rogue node refused", || {
        Provisioner::status(&cfg)
            .get("rogue-01")
            .is_some_and(|r| r["status"] == "refused")
    });
    let status = Provisioner::status(&cfg);

    // Each node has a master of its own region, and both masters of a region got nodes.
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (n, region, img) in &images {
        let rec = &status[n.as_str()];
        let m = rec["master"].as_str().unwrap().to_string();
        assert!(
            m.starts_with(&format!("m-{region}-")),
            "{n} in {region} got {m}"
        );
        assert!(
            !img.hosts().contains("evil-master"),
            "{n} was pointed at evil-master"
        );
        let ip = &masters.iter().find(|(name, _, _)| *name == m).unwrap().2;
        assert!(
            img.hosts().contains(&format!("{ip} {m} puppet\n")),
            "{n}: {}",
            img.hosts()
        );
        assert!(
            !img.hosts().contains("old-master"),
            "{n}: the old puppet line stays"
        );
        certificate_verifies(&c, img, n);
        assert_eq!(rec["signed"], true);
        assert_eq!(
            fs::read_to_string(img.dir.join("final-ran"))
                .ok()
                .as_deref(),
            Some("final\n"),
            "{n}: the final run ran"
        );
        used.entry(region).or_default().insert(m);
    }
    for region in regions {
        assert_eq!(used[region].len(), 2, "{region}: {:?}", used[region]);
    }

    // Every node answers signed RPC in the main collective with its new certificate.
    let list = c.scratch().join("provisioned.txt");
    fs::write(
        &list,
        nodes
            .iter()
            .map(|(n, _)| format!("{n}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = c
        .mco("alice")
        .args([
            "rpc",
            "--nodes",
            &s(&list),
            "-j",
            "-t",
            "10s",
            "rpcutil",
            "ping",
        ])
        .run();
    let got = replies(&out);
    assert_eq!(got.len(), 50, "{out:?}");
    assert!(got.iter().all(|r| r["statuscode"] == 0), "{out:?}");

    // The rogue node is never signed, and stays in provisioning.
    assert!(rogue.certificate().is_none());
    assert!(issued(&c, "rogue-01").is_empty());
    assert!(status["rogue-01"]["error"]
        .as_str()
        .unwrap()
        .contains("not expected"));
    // Each name was signed once; the spare certificate issued before provisioning was revoked.
    for (n, _) in &nodes {
        let e = issued(&c, n);
        assert_eq!(e.len(), 2, "{n}: {e:?}");
        assert_eq!(e.iter().filter(|(_, revoked)| !revoked).count(), 1, "{n}");
    }

    // The webhook heard every outcome.
    let events = hook.events();
    let provisioned: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["outcome"] == "provisioned")
        .map(|e| e["node"].as_str().unwrap())
        .collect();
    assert_eq!(provisioned.len(), 50, "{events:?}");
    assert!(events
        .iter()
        .any(|e| e["outcome"] == "refused" && e["node"] == "rogue-01"));
    let one = events.iter().find(|e| e["node"] == "node-07").unwrap();
    assert!(
        one["master"].as_str().unwrap().starts_with("m-us-"),
        "{one}"
    );
    // The event says how long the node took (its value is a measurement, not asserted).
    assert!(one["duration_ms"].is_u64(), "{one}");
    assert_eq!(one["attempts"], 1, "{one}");

    // Counters, over HTTP and in the status table.
    let m = http_get(metrics_port(&p), "/metrics");
    assert!(m.contains("mco_provision_provisioned_total 50\n"), "{m}");
    assert!(m.contains("mco_provision_refused_total 1\n"), "{m}");
    assert!(
        m.contains("mco_provision_step_seconds_count{step=\"sign\"} 50\n"),
        "{m}"
    );
    let table = mco_tests::Cmd::mco()
        .args(["provision", "status", "--config", &s(&cfg)])
        .run();
    assert!(
        table
            .stdout
            .contains("provisioned: 50, in progress: 0, failed: 0, gave up: 0, refused: 1"),
        "{table:?}"
    );
}

/// A CSR for another name, placed where the node's gencsr finds it: what a tampered node sends.
fn plant_foreign_csr(c: &SecureCollective, img: &Image, identity: &str, other: &str) {
    let tmp = c.scratch().join(format!("foreign-{identity}"));
    let out = mco_tests::Cmd::mco()
        .args(["pki", "--dir", &s(&tmp), "csr", other, "--kind", "node"])
        .run();
    assert_eq!(out.status, 0, "{out:?}");
    let csr_dir = img.dir.join("state/csr");
    fs::create_dir_all(&csr_dir).unwrap();
    fs::copy(
        tmp.join(format!("{other}.csr")),
        csr_dir.join(format!("{identity}.csr")),
    )
    .unwrap();
    fs::copy(
        tmp.join(format!("{other}.key")),
        csr_dir.join(format!("{identity}.key")),
    )
    .unwrap();
}

#[test]
fn failures_are_retried_a_killed_provisioner_resumes_and_new_masters_are_used() {
    let names = [
        "node-a", "node-b", "node-c", "node-d", "node-e", "node-g", "node-k", "node-x", "node-y",
    ];
    let mut b = SecureCollective::builder()
        .user("bob")
        .registry("expected", &["alice"])
        .spare_node("ca-node")
        .spare_node("m-eu-1")
        .spare_node("m-eu-2");
    for n in names {
        b = b.spare_node(n);
    }
    let c = b.start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c, &["node-*"], "alice");
    let eu = || json!({"region": "eu"});

    // node-a's bootstrap fails once (Puppet's 4: failures), then succeeds.
    let flag = c.scratch().join("node-a-failed-once");
    let flaky = format!(
        r#"["sh", "-c", "if [ -e {f} ]; then echo Notice: ok; exit 0; else touch {f}; echo Error: could not apply; exit 4; fi"]"#,
        f = s(&flag)
    );
    let a = Image::new(&c, &prov, "node-a", eu(), &flaky, "[]");
    // node-b and node-c bootstrap slowly, so the provisioner can be killed mid-way.
    let slow = r#"["sh", "-c", "sleep 3; echo Notice: done"]"#;
    let bn = Image::new(&c, &prov, "node-b", eu(), slow, "[]");
    let cn = Image::new(&c, &prov, "node-c", eu(), slow, "[]");
    // node-x presents a CSR for another name.
    let x = Image::new(&c, &prov, "node-x", eu(), "[]", "[]");
    plant_foreign_csr(&c, &x, "node-x", "node-z");
    // node-y presents a CSR for its own name, but for another key than its replies are signed with.
    let y = Image::new(&c, &prov, "node-y", eu(), "[]", "[]");
    plant_foreign_csr(&c, &y, "node-y", "node-y");

    let hook = Webhook::start();
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        &format!(
            "workers = 4\ninterval = \"500ms\"\nbackoff = \"1s\"\nretries = 4\nmetrics_listen = \"127.0.0.1:0\"\n\
             [ca]\nidentity = \"ca-node\"\n\
             [expected]\nidentities = [\"node-[a-e]\", \"node-[xy]\"]\nkv_bucket = \"expected\"\n\
             [masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\ncriteria = [\"region\"]\nrefresh = \"0s\"\n\
             [[notify]]\ntype = \"webhook\"\nurl = {url:?}\n",
            url = hook.url,
        ),
    );
    let mut p = Provisioner::start(&cfg);
    let _nodes: Vec<Responder> = [&a, &bn, &cn, &x, &y].iter().map(|i| i.boot(&c)).collect();

    // No master yet: the nodes wait, and the operator is told once per node. (Masters are
    // looked for one node at a time, each look a whole discovery timeout while none answers,
    // so every node is waited for before the master comes.)
    eventually(
        LONG,
        "node-a, node-b and node-c waiting for a master",
        || {
            assert!(p.child.is_running(), "{}", p.child.stderr_text());
            let events = hook.events();
            ["node-a", "node-b", "node-c"].iter().all(|n| {
                events
                    .iter()
                    .any(|e| e["node"] == *n && e["outcome"] == "waiting")
            })
        },
    );
    assert!(bn.certificate().is_none());
    assert!(hook
        .events()
        .iter()
        .any(|e| e["node"] == "node-b" && e["outcome"] == "waiting"));
    // m-eu-1 keeps a copy of the CA's files with the `ca` agent (as a Puppet master caches
    // certificates): old certificates are cleaned there too.
    let copy = c.scratch().join("m-eu-1-ca");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(c.pki_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    assert!(copy.join("node-a.pem").exists());
    let _m1 = master_with(
        &c,
        "m-eu-1",
        "eu",
        "10.0.0.11",
        10,
        &format!(
            "[agents]\nenabled = [\"rpcutil\", \"ca\"]\n[plugin.ca]\ndir = {:?}\nallow_names = [\"node-*\"]\n",
            s(&copy)
        ),
    );

    // Kill the provisioner once node-b or node-c is signed but not yet done.
    eventually(LONG, "a node signed and bootstrapping", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        Provisioner::status(&cfg).iter().any(|(n, r)| {
            (n == "node-b" || n == "node-c") && r["signed"] == true && r["status"] == "in_progress"
        })
    });
    p.child.kill();
    let before = Provisioner::status(&cfg);
    // A second provisioner on the same journal is refused while one runs.
    let mut p = Provisioner::start(&cfg);
    eventually(LONG, "the provisioner to start again", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        p.child.stderr_text().contains("provisioner started")
    });
    let second = mco_tests::Cmd::mco()
        .args(["provision", "run", "--config", &s(&cfg)])
        .timeout(Duration::from_secs(30))
        .run();
    assert_ne!(second.status, 0, "{second:?}");
    assert!(
        second
            .stderr
            .contains("another provisioner is using this state file"),
        "{second:?}"
    );

    eventually(LONG, "node-a, node-b and node-c provisioned", || {
        let st = Provisioner::status(&cfg);
        ["node-a", "node-b", "node-c"]
            .iter()
            .all(|n| st.get(*n).is_some_and(|r| r["status"] == "provisioned"))
    });
    // Resumed without signing anything twice: one live certificate per node, and only the
    // spare one from before provisioning revoked.
    for n in ["node-b", "node-c"] {
        let e = issued(&c, n);
        assert_eq!(
            e.len(),
            2,
            "{n} was signed more than once: {e:?} (before the kill: {before:?})"
        );
        assert_eq!(e.iter().filter(|(_, revoked)| !revoked).count(), 1, "{n}");
    }
    for (img, n) in [(&a, "node-a"), (&bn, "node-b"), (&cn, "node-c")] {
        assert!(
            !copy.join(format!("{n}.pem")).exists(),
            "{n}'s old certificate is still on m-eu-1"
        );
        certificate_verifies(&c, img, n);
        assert!(img.hosts().contains("10.0.0.11 m-eu-1 puppet\n"), "{n}");
    }
    // node-a failed once, was retried, and made it.
    let st = Provisioner::status(&cfg);
    // Two attempts, or three if the kill interrupted one of them.
    let attempts = st["node-a"]["attempts"].as_u64().unwrap();
    assert!((2..=3).contains(&attempts), "{:?}", st["node-a"]);
    let events = hook.events();
    let a_events: Vec<&Value> = events.iter().filter(|e| e["node"] == "node-a").collect();
    // Waiting (said once), failed, provisioned.
    let outcomes: Vec<&str> = a_events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["waiting", "failed", "provisioned"],
        "{a_events:?}"
    );
    assert_eq!(a_events[1]["step"], "bootstrap");
    assert!(
        a_events[1]["error"]
            .as_str()
            .unwrap()
            .contains("Error: could not apply"),
        "{a_events:?}"
    );

    // node-x's foreign CSR is refused, and nothing is signed for either name.
    eventually(LONG, "node-x refused", || {
        Provisioner::status(&cfg)
            .get("node-x")
            .is_some_and(|r| r["status"] == "refused")
    });
    let xs = &Provisioner::status(&cfg)["node-x"];
    assert!(
        xs["error"].as_str().unwrap().contains("node:node-z"),
        "{xs:?}"
    );
    assert!(x.certificate().is_none());
    assert!(issued(&c, "node-z").is_empty());
    assert!(
        issued(&c, "node-x").iter().all(|(_, revoked)| !revoked),
        "node-x's old certificate is left alone"
    );
    assert!(hook
        .events()
        .iter()
        .any(|e| e["node"] == "node-x" && e["outcome"] == "refused"));
    eventually(LONG, "node-y refused", || {
        Provisioner::status(&cfg)
            .get("node-y")
            .is_some_and(|r| r["status"] == "refused")
    });
    let ys = &Provisioner::status(&cfg)["node-y"];
    assert!(
        ys["error"].as_str().unwrap().contains("not the key")
            && ys["error"]
                .as_str()
                .unwrap()
                .contains("its replies are signed with"),
        "{ys:?}"
    );
    assert!(y.certificate().is_none());
    assert!(
        issued(&c, "node-y").iter().all(|(_, revoked)| !revoked),
        "nothing was cleaned or signed for node-y"
    );

    // A master added while the provisioner runs is used for the next node.
    let _m2 = master(&c, "m-eu-2", "eu", "10.0.0.12", 0);
    let d = Image::new(&c, &prov, "node-d", eu(), r#"["true"]"#, "[]");
    let _nd = d.boot(&c);
    eventually(LONG, "node-d provisioned", || {
        Provisioner::status(&cfg)
            .get("node-d")
            .is_some_and(|r| r["status"] == "provisioned")
    });
    assert_eq!(Provisioner::status(&cfg)["node-d"]["master"], "m-eu-2");
    assert!(
        d.hosts().contains("10.0.0.12 m-eu-2 puppet\n"),
        "{}",
        d.hosts()
    );

    // A node another provisioner (bob) holds is left to it, and taken up once bob lets go.
    p.child.kill();
    let e = Image::new(&c, &prov, "node-e", eu(), r#"["true"]"#, "[]");
    let _ne = e.boot(&c);
    let bob_cfg = mco_tests::provisioning::provisioning_client_config(&c, &prov, "bob");
    let bob = |action: &str, extra: &[&str]| {
        mco_tests::Cmd::mco()
            .arg("--config")
            .arg(&bob_cfg)
            .env("XDG_CACHE_HOME", c.scratch().join("bob-cache"))
            .args([
                "rpc",
                "-T",
                "provisioning",
                "-I",
                "node-e",
                "-j",
                "-t",
                "5s",
            ])
            .args(["provision", action])
            .arg(format!("token={}", mco_tests::provisioning::TOKEN))
            .args(extra)
            .run()
    };
    eventually(LONG, "bob to lock node-e", || {
        let out = bob("lock", &["expiry=600"]);
        out.status == 0 && replies(&out).first().is_some_and(|r| r["statuscode"] == 0)
    });
    let mut p = Provisioner::start(&cfg);
    let port = metrics_port(&p);
    eventually(LONG, "the provisioner to find node-e locked by bob", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        http_get(port, "/metrics").lines().any(|l| {
            l.starts_with("mco_provision_busy_total ") && l != "mco_provision_busy_total 0"
        })
    });
    assert!(!Provisioner::status(&cfg).contains_key("node-e"));
    assert!(e.certificate().is_none());
    let out = bob("unlock", &[]);
    assert_eq!(replies(&out)[0]["statuscode"], 0, "{out:?}");
    eventually(LONG, "node-e provisioned once bob let go", || {
        Provisioner::status(&cfg)
            .get("node-e")
            .is_some_and(|r| r["status"] == "provisioned")
    });

    // node-k is expected only once whatever booted it writes its name into the registry bucket.
    let k = Image::new(&c, &prov, "node-k", eu(), r#"["true"]"#, "[]");
    let _nk = k.boot(&c);
    eventually(LONG, "node-k refused as not expected", || {
        Provisioner::status(&cfg)
            .get("node-k")
            .is_some_and(|r| r["status"] == "refused")
    });
    assert!(k.certificate().is_none());
    // The token does not reach the registry: it lives on the main broker.
    let refused = mco_tests::provisioning::token_kv_put(&c, &prov, "expected", "node-k");
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        mco_tests::provisioning::kv_get(&c, "alice", "expected", "node-k"),
        None
    );
    // Registered with its classification, as the bucket's JSON value.
    mco_tests::provisioning::kv_put(
        &c,
        "alice",
        "expected",
        "node-k",
        r#"{"classes": ["role::autoscaled"], "parameters": {"pool": "spot"}}"#,
    );
    eventually(LONG, "node-k provisioned once registered", || {
        Provisioner::status(&cfg)
            .get("node-k")
            .is_some_and(|r| r["status"] == "provisioned")
    });
    certificate_verifies(&c, &k, "node-k");
    eventually(
        LONG,
        "node-k advertising the classes its registry entry gave",
        || {
            let out = c
                .mco("alice")
                .args(["find", "-C", "role::autoscaled", "-F", "pool=spot"])
                .run();
            out.stdout.lines().collect::<Vec<_>>() == vec!["node-k"]
        },
    );

    // node-g's bootstrap fails until its fix is in, and the provisioner gives up on it. Once it
    // is fixed, `mco provision retry` (refused while the provisioner runs) lets it start afresh.
    let fixed = c.scratch().join("node-g-fixed");
    let broken = format!(
        r#"["sh", "-c", "if [ -e {f} ]; then echo Notice: ok; exit 0; else echo Error: no package; exit 1; fi"]"#,
        f = s(&fixed)
    );
    let g = Image::new(&c, &prov, "node-g", eu(), &broken, "[]");
    mco_tests::provisioning::kv_put(&c, "alice", "expected", "node-g", "booted by hand");
    let _ng = g.boot(&c);
    eventually(LONG, "the provisioner to give up on node-g", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        Provisioner::status(&cfg)
            .get("node-g")
            .is_some_and(|r| r["status"] == "gave_up")
    });
    let retry = || {
        mco_tests::Cmd::mco()
            .args(["provision", "retry", "node-g", "--config", &s(&cfg)])
            .run()
    };
    let busy = retry();
    assert_eq!(busy.status, 1, "{busy:?}");
    assert!(busy.stderr.contains("stop it first"), "{busy:?}");
    p.child.kill();
    std::fs::write(&fixed, "").unwrap();
    let out = retry();
    out.assert_success();
    assert!(
        out.stdout.contains("node-g: gave_up; tried again"),
        "{out:?}"
    );
    assert_eq!(Provisioner::status(&cfg)["node-g"]["attempts"], 0);
    let mut p = Provisioner::start(&cfg);
    eventually(LONG, "node-g provisioned after the retry", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        Provisioner::status(&cfg)
            .get("node-g")
            .is_some_and(|r| r["status"] == "provisioned")
    });
    certificate_verifies(&c, &g, "node-g");

    // A provisioner killed after restarting a node but before seeing it answer leaves the node
    // in progress at its restart step; the next one to start confirms it in the main collective
    // and records it provisioned, signing nothing.
    p.child.kill();
    let journal = cfg.with_file_name("state.jsonl");
    let last: Value = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["node"] == "node-g")
        .expect("node-g in the journal");
    let mut killed = last.clone();
    killed["status"] = json!("in_progress");
    killed["step"] = json!("restart");
    let mut f = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(format!("{killed}\n").as_bytes()).unwrap();
    drop(f);
    assert_eq!(Provisioner::status(&cfg)["node-g"]["status"], "in_progress");
    let signed_before = issued(&c, "node-g");
    let mut p = Provisioner::start(&cfg);
    eventually(
        LONG,
        "node-g confirmed after the restart it was left at",
        || {
            assert!(p.child.is_running(), "{}", p.child.stderr_text());
            Provisioner::status(&cfg)
                .get("node-g")
                .is_some_and(|r| r["status"] == "provisioned" && r["step"] == "confirm")
        },
    );
    assert!(
        p.child.stderr_text().contains("confirmed after a restart"),
        "{}",
        p.child.stderr_text()
    );
    assert_eq!(issued(&c, "node-g"), signed_before, "nothing signed again");
    drop(p);
}
