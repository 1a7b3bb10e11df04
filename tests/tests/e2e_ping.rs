//! `mco ping`, `mco find` and a stopped responder, against real processes.

use mco_tests::{mco, NatsServer, Responder, ResponderSpec};

#[test]
fn ping_find_and_a_stopped_node() {
    let nats = NatsServer::start();
    let url = nats.url();
    let _a = Responder::start(&nats, ResponderSpec::new("alpha"));
    let mut b = Responder::start(&nats, ResponderSpec::new("beta"));

    let out = mco(["ping", "--nats", &url]);
    out.assert_success();
    assert!(
        out.stdout.contains("alpha") && out.stdout.contains("beta"),
        "{out:?}"
    );
    assert!(out.stdout.contains("2 replies max:"), "{out:?}");

    let out = mco(["find", "--nats", &url]);
    out.assert_success();
    assert_eq!(out.stdout, "alpha\nbeta\n");

    // A node that stops answering is named and sets the exit code.
    b.child.kill();
    let out = mco([
        "rpc", "rpcutil", "ping", "--nats", &url, "-I", "alpha", "-I", "beta", "-t", "2s",
    ]);
    out.assert_exit(2);
    assert!(out.stdout.contains("No response from:"), "{out:?}");
    assert!(out.stdout.contains("beta"), "{out:?}");
    assert!(
        out.stdout.contains("Finished processing 1 / 2 hosts"),
        "{out:?}"
    );

    // Only a silent node: discovered by literal identity, no replies → 4.
    let out = mco([
        "rpc", "rpcutil", "ping", "--nats", &url, "-I", "beta", "-t", "1s",
    ]);
    out.assert_exit(4);
}
