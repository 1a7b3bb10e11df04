//! Every filter kind and operator of ARCHITECTURE.md §4, checked with `mco find` against real responders
//! with different facts, classes and collectives; malformed filters are refused before anything
//! is sent.

use std::sync::atomic::{AtomicUsize, Ordering};

use mco_tests::replies::counter;
use mco_tests::{mco, NatsServer, Output, Responder, ResponderSpec};
use serde_json::json;

const ALL: &[&str] = &["db1", "test-web3", "web1", "web2"];

/// `mco find` runs at once; each mostly waits for its discovery window.
const PARALLEL_FINDS: usize = 6;

fn specs() -> Vec<ResponderSpec> {
    vec![
        ResponderSpec::new("web1")
            .facts(json!({
                "role": "web", "country": "fr", "cpus": 8,
                "os": {"family": "Debian", "release": {"major": 12}},
                "tags": ["a", "b"], "version": "1.10.2"
            }))
            .classes(&["nginx", "users::admin"])
            .collectives(&["mcollective", "eu"]),
        ResponderSpec::new("web2")
            .facts(json!({
                "role": "web", "country": "de", "cpus": 16,
                "os": {"family": "RedHat", "release": {"major": 9}},
                "tags": ["b", "c"], "version": "1.8.5"
            }))
            .classes(&["nginx", "apache"]),
        ResponderSpec::new("db1")
            .facts(json!({
                "role": "db", "country": "fr", "cpus": 4,
                "os": {"family": "Debian", "release": {"major": 11}},
                "tags": ["c"], "version": "2.0"
            }))
            .classes(&["postgres", "users::admin"]),
        ResponderSpec::new("test-web3")
            .facts(json!({
                "role": "web", "country": "us", "cpus": 2,
                "os": {"family": "Ubuntu", "release": {"major": 22}},
                "tags": [], "version": "1.2"
            }))
            .classes(&["nginx", "test"]),
    ]
}

/// Starts every responder at once, then waits for each.
fn start_fleet(nats: &NatsServer) -> Vec<Responder> {
    let nodes: Vec<Responder> = specs()
        .into_iter()
        .map(|s| Responder::spawn(nats, s))
        .collect();
    for n in &nodes {
        n.wait_ready(nats);
    }
    nodes
}

fn find(url: &str, args: &[&str]) -> Output {
    let mut all = vec![
        "find",
        "--nats",
        url,
        "--dt",
        "1s",
        "--discovery-window",
        "500ms",
    ];
    all.extend_from_slice(args);
    mco(all)
}

/// One `mco find` run: its filter arguments and exactly the nodes it must print.
type Case = (&'static [&'static str], &'static [&'static str]);

/// What is wrong with the output of `mco find ARGS`, if anything: it must print exactly
/// `expected` (sorted, one per line) and exit 0, or print nothing and exit 1.
fn mismatch(url: &str, (args, expected): Case) -> Option<String> {
    let out = find(url, args);
    let mut want: Vec<&str> = expected.to_vec();
    want.sort_unstable();
    let (status, stdout) = if want.is_empty() {
        (1, String::new())
    } else {
        (0, format!("{}\n", want.join("\n")))
    };
    (out.status != status || out.stdout != stdout)
        .then(|| format!("expected exit {status} and nodes {want:?}\n{out:?}\n"))
}

/// Runs every case, several at a time, and reports all that found the wrong nodes.
#[track_caller]
fn check(url: &str, cases: &[Case]) {
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL_FINDS)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                        failed.extend(mismatch(url, *case));
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a find worker panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} filters found the wrong nodes:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const IDENTITY: &[Case] = &[
    (&[], ALL),
    (&["-I", "web1"], &["web1"]),
    (&["-I", "web*"], &["web1", "web2"]),
    (&["-I", "*web*"], &["web1", "web2", "test-web3"]),
    (&["-I", "/^(db|test)/"], &["db1", "test-web3"]),
    (&["-I", "/web/"], &["web1", "web2", "test-web3"]),
    (&["-I", "web1", "-I", "/^db/"], &["web1", "db1"]),
    // Any of: web1 matches both patterns and is still found.
    (&["-I", "web*", "-I", "/1$/"], &["web1", "web2", "db1"]),
    (&["--identity", "web2"], &["web2"]),
    // A literal identity nobody has: find asks the bus, it does not echo the filter.
    (&["-I", "nosuch"], &[]),
    (&["-I", "nosuch", "-I", "db1"], &["db1"]),
];

const FACT: &[Case] = &[
    (&["-F", "role=web"], &["web1", "web2", "test-web3"]),
    (&["-F", "role==db"], &["db1"]),
    (&["-F", "role!=web"], &["db1"]),
    (&["--wf", "role=db"], &["db1"]),
    (&["--with-fact", "role = db"], &["db1"]),
    (&["-F", "cpus<8"], &["db1", "test-web3"]),
    (&["-F", "cpus>8"], &["web2"]),
    (&["-F", "cpus<=8"], &["web1", "db1", "test-web3"]),
    (&["-F", "cpus>=8"], &["web1", "web2"]),
    (&["-F", "cpus=>16"], &["web2"]),
    (&["-F", "cpus=<4"], &["db1", "test-web3"]),
    (&["-F", "cpus=8"], &["web1"]),
    (&["-F", "cpus=8.0"], &["web1"]),
    // Numeric, not text: as strings "8", "4" and "2" sort after "10".
    (&["-F", "cpus<10"], &["web1", "db1", "test-web3"]),
    // Versions: 1.10.2 is newer than 1.9, 1.8.5 is not; 2.0 and 1.2 compare as numbers.
    (&["-F", "version>1.9"], &["web1", "db1"]),
    (&["-F", "version<1.9"], &["web2", "test-web3"]),
    (&["-F", "version>=1.10.2"], &["web1", "db1"]),
    (&["-F", "country=~^f"], &["web1", "db1"]),
    (&["-F", "country=~/^(de|us)$/"], &["web2", "test-web3"]),
    (&["-F", "country=/^(de|us)$/"], &["web2", "test-web3"]),
    (&["-F", "country!=/^f/"], &["web2", "test-web3"]),
    (&["-F", "os.family=Debian"], &["web1", "db1"]),
    (&["-F", "os.release.major>=12"], &["web1", "test-web3"]),
    (&["-F", "os.release.major<12"], &["web2", "db1"]),
    // Array facts match when any element does; != when none does.
    (&["-F", "tags=a"], &["web1"]),
    (&["-F", "tags=c"], &["web2", "db1"]),
    (&["-F", "tags=~^[ab]$"], &["web1", "web2"]),
    (&["-F", "tags!=c"], &["web1", "test-web3"]),
    // Several: all must hold.
    (&["-F", "role=web", "-F", "country=fr"], &["web1"]),
    (&["-F", "role=web", "-F", "cpus<4"], &["test-web3"]),
    (&["-F", "no_such_fact=1"], &[]),
    (&["-F", "os.release.major.minor=1"], &[]),
];

const CLASS_AGENT_WITH: &[Case] = &[
    (&["-C", "nginx"], &["web1", "web2", "test-web3"]),
    (&["--wc", "apache"], &["web2"]),
    (&["--with-class", "postgres"], &["db1"]),
    (&["-C", "/^users::/"], &["web1", "db1"]),
    (&["-C", "/^(apache|test)$/"], &["web2", "test-web3"]),
    (&["-C", "nginx", "-C", "users::admin"], &["web1"]),
    (
        &["-C", "nginx", "-C", "/^(apache|test)$/"],
        &["web2", "test-web3"],
    ),
    (&["-C", "users"], &[]),
    (&["-C", "nosuch"], &[]),
    (&["-A", "rpcutil"], ALL),
    (&["--wa", "/^rpc/"], ALL),
    (&["-A", "puppet"], &[]),
    (&["-A", "rpcutil", "-A", "puppet"], &[]),
    // -W: a fact when it has an operator, else a class; several terms per value, as MCollective.
    (&["-W", "nginx"], &["web1", "web2", "test-web3"]),
    (&["-W", "country=fr"], &["web1", "db1"]),
    (&["-W", "nginx", "-W", "country=fr"], &["web1"]),
    (&["--with", "users::admin cpus<8"], &["db1"]),
    (&["-W", "nginx cpus>4 /^users/"], &["web1"]),
];

const COMPOUND: &[Case] = &[
    (
        &["-S", "(role=web or role=db) and country=fr"],
        &["web1", "db1"],
    ),
    (
        &["-S", "role=web or role=db and country=fr"],
        &["web1", "web2", "db1", "test-web3"],
    ),
    (&["-S", "role=web and not /^users/"], &["web2", "test-web3"]),
    (&["-S", "nginx and ! apache"], &["web1", "test-web3"]),
    (&["-S", "!nginx"], &["db1"]),
    (&["-S", "not role=web"], &["db1"]),
    (&["-S", "not not postgres"], &["db1"]),
    (&["-S", "postgres"], &["db1"]),
    (&["-S", "/^te/"], &["test-web3"]),
    (&["-S", "class(apache)"], &["web2"]),
    (&["-S", "identity(db1) or fact(cpus>10)"], &["db1", "web2"]),
    (&["-S", "identity(web*) and not identity(/2$/)"], &["web1"]),
    (
        &["-S", "fact(os.family=Debian) and fact(\"tags = c\")"],
        &["db1"],
    ),
    (&["-S", "agent(rpcutil) and country=de"], &["web2"]),
    (&["-S", "agent(puppet) or postgres"], &["db1"]),
    (&["-S", "agent(puppet)"], &[]),
    (
        &[
            "-S",
            "(nginx or postgres) and (os.release.major<12 or version>1.9) and not identity(web2)",
        ],
        &["web1", "db1"],
    ),
    // Several -S: all must hold.
    (
        &["-S", "role=web", "-S", "country=fr or country=us"],
        &["web1", "test-web3"],
    ),
];

const COLLECTIVES_AND_COMBINATIONS: &[Case] = &[
    (&["-T", "eu"], &["web1"]),
    (&["--target", "eu", "-F", "role=web"], &["web1"]),
    (&["-T", "eu", "-F", "role=db"], &[]),
    (&["-T", "mcollective"], ALL),
    (&["-T", "asia"], &[]),
    // Kinds combine with AND.
    (
        &[
            "-I",
            "web*",
            "-F",
            "country=de",
            "-C",
            "nginx",
            "-A",
            "rpcutil",
        ],
        &["web2"],
    ),
    (
        &["-C", "nginx", "-F", "cpus<10", "-S", "not identity(web1)"],
        &["test-web3"],
    ),
    (&["-I", "/web/", "-C", "users::admin"], &["web1"]),
    (&["-I", "db1", "-F", "role=web"], &[]),
    (
        &["-W", "users::admin", "-S", "country=fr and cpus>4"],
        &["web1"],
    ),
];

/// A malformed filter exits 64, names the column on stderr, prints nothing and sends nothing.
#[track_caller]
fn assert_refused(url: &str, args: &[&str], what: &str) {
    let out = find(url, args);
    out.assert_exit(64);
    assert!(
        out.stderr.contains(what),
        "stderr should say {what:?}\n{out:?}"
    );
    assert_eq!(out.stdout, "", "{out:?}");
}

fn malformed_filters(url: &str) {
    let before = counter(url, "mcollective", ALL, "total");
    assert_refused(url, &["-S", "role=web and ("], "column 15");
    assert_refused(url, &["-S", "(role=web"], "column 10");
    assert_refused(url, &["-F", "role"], "fact filter \"role\": column 1");
    assert_refused(url, &["-F", "role=~/x(/"], "fact filter");
    assert_refused(url, &["-I", "/x(/"], "identity filter \"/x(/\": column 2");
    assert_refused(url, &["-C", "/x(/"], "class filter \"/x(/\": column 2");
    assert_refused(url, &["-W", "nginx cpus<"], "column");
    let after = counter(url, "mcollective", ALL, "total");
    // The second daemon_stats call is the only request each node saw in between.
    for &node in ALL {
        assert_eq!(
            after[node],
            before[node] + 1,
            "{node} saw a request from a refused filter: before {before:?}, after {after:?}"
        );
    }
}

#[test]
fn every_filter_kind_and_operator() {
    let nats = NatsServer::start();
    let url = nats.url();
    let _fleet = start_fleet(&nats);

    malformed_filters(&url);
    check(&url, IDENTITY);
    check(&url, FACT);
    check(&url, CLASS_AGENT_WITH);
    check(&url, COMPOUND);
    check(&url, COLLECTIVES_AND_COMBINATIONS);
}
