//! The support library against the real things it wraps: a real nats-server, real child
//! processes, real commands.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mco_tests::proc::{bin_dir, process_gone};
use mco_tests::{bin_path, eventually, eventually_async, ChildGuard, Cmd, NatsServer, ProcStat};
use tokio::sync::Mutex;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);

/// Publishes `payload` on `subject` from `publisher` and expects `subscriber` to receive it.
async fn round_trip(
    publisher: &async_nats::Client,
    subscriber: &mut async_nats::Subscriber,
    subject: &str,
    payload: &'static str,
) {
    timeout(
        STEP,
        publisher.publish(subject.to_string(), Bytes::from_static(payload.as_bytes())),
    )
    .await
    .expect("publish in time")
    .expect("publish");
    timeout(STEP, publisher.flush())
        .await
        .expect("flush in time")
        .expect("flush");
    let msg = timeout(STEP, subscriber.next())
        .await
        .expect("a message in time")
        .expect("subscription open");
    assert_eq!(msg.subject.as_str(), subject);
    assert_eq!(msg.payload, payload.as_bytes());
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

#[tokio::test]
async fn nats_server_carries_messages() {
    let server = NatsServer::start();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    let client = timeout(STEP, async_nats::connect(server.url()))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut sub = timeout(STEP, client.subscribe("smoke.hello"))
        .await
        .expect("subscribe in time")
        .expect("subscribe");
    timeout(STEP, client.flush())
        .await
        .expect("flush in time")
        .expect("flush");
    round_trip(&client, &mut sub, "smoke.hello", "hi there").await;
    assert_eq!(client.server_info().max_payload, 1024 * 1024);
}

#[tokio::test]
async fn max_payload_reaches_the_server() {
    let server = NatsServer::builder().max_payload(4096).start();
    let client = server.client().await;
    assert_eq!(client.server_info().max_payload, 4096);
    let too_big = Bytes::from(vec![b'x'; 4097]);
    let res = timeout(STEP, client.publish("smoke.big", too_big))
        .await
        .expect("publish returns in time");
    assert!(res.is_err(), "a payload over max_payload is refused");
}

#[tokio::test]
async fn restart_keeps_the_port() {
    let mut server = NatsServer::start();
    let port = server.port();
    let first_pid = server.pid().expect("running");
    let survivor = server.client().await;
    let survivor_sub = timeout(STEP, survivor.subscribe("smoke.restart"))
        .await
        .expect("subscribe in time")
        .expect("subscribe");
    timeout(STEP, survivor.flush())
        .await
        .expect("flush in time")
        .expect("flush");

    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(
        !accepts_connections(port),
        "the port is closed while stopped"
    );

    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_ne!(server.pid(), Some(first_pid));

    let fresh = server.client().await;
    let mut fresh_sub = timeout(STEP, fresh.subscribe("smoke.fresh"))
        .await
        .expect("subscribe in time")
        .expect("subscribe");
    timeout(STEP, fresh.flush())
        .await
        .expect("flush in time")
        .expect("flush");
    round_trip(&fresh, &mut fresh_sub, "smoke.fresh", "after restart").await;

    // A client connected before the restart reconnects on its own and resubscribes.
    let survivor_sub = Arc::new(Mutex::new(survivor_sub));
    eventually_async(
        Duration::from_secs(20),
        "the old client to get messages again",
        || {
            let fresh = fresh.clone();
            let sub = Arc::clone(&survivor_sub);
            async move {
                let mut sub = sub.lock().await;
                if fresh
                    .publish("smoke.restart", Bytes::from_static(b"again"))
                    .await
                    .is_err()
                    || fresh.flush().await.is_err()
                {
                    return false;
                }
                matches!(
                    timeout(Duration::from_millis(200), sub.next()).await,
                    Ok(Some(msg)) if msg.payload == "again"
                )
            }
        },
    )
    .await;
}

#[test]
fn restart_of_a_running_server_replaces_it() {
    let mut server = NatsServer::start();
    let pid = server.pid().expect("running");
    let stat = ProcStat::of(pid).expect("the server process exists");
    server.restart();
    assert!(process_gone(pid, &stat), "the old server is reaped");
    assert!(accepts_connections(server.port()));
}

#[test]
fn restart_fails_loudly_when_the_port_is_taken() {
    let mut server = NatsServer::builder()
        .ready_timeout(Duration::from_secs(1))
        .start();
    server.stop();
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, server.port())).expect("take the port");
    let err = catch_unwind(AssertUnwindSafe(|| server.restart())).expect_err("cannot restart");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("did not restart on port"), "{msg}");
    assert!(msg.contains("address already in use"), "{msg}");
    drop(squatter);
    assert!(!server.is_running());
}

#[test]
fn drop_leaves_no_process() {
    let server = NatsServer::start();
    let port = server.port();
    let pid = server.pid().expect("running");
    let stat = ProcStat::of(pid).expect("the server process exists");
    assert_eq!(stat.comm, "nats-server");
    assert!(
        server.log_text().contains("Server is ready"),
        "{}",
        server.log_text()
    );
    drop(server);
    eventually(
        Duration::from_secs(5),
        "the server process to vanish",
        || process_gone(pid, &stat),
    );
    assert!(!accepts_connections(port));
}

#[test]
fn drop_during_a_panic_leaves_no_process() {
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let server = NatsServer::start();
        let pid = server.pid().expect("running");
        seen = Some((pid, ProcStat::of(pid).expect("the server process exists")));
        panic!("a failing test");
    }));
    assert!(result.is_err());
    let (pid, stat) = seen.expect("the server started");
    eventually(
        Duration::from_secs(5),
        "the server process to vanish",
        || process_gone(pid, &stat),
    );
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn child_guard_captures_output_and_takes_signals() {
    let mut child = ChildGuard::spawn(sh("echo to-out; echo to-err >&2; exec sleep 600"));
    eventually(STEP, "the child's output", || {
        child.stdout_text() == "to-out\n" && child.stderr_text() == "to-err\n"
    });
    assert!(child.is_running());
    assert_eq!(child.wait_exit(Duration::from_millis(100)), None);
    assert!(child.signal(libc::SIGTERM));
    let status = child.wait_exit(STEP).expect("exits on SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(!child.signal(libc::SIGTERM), "no signal to an exited child");
}

#[test]
fn child_guard_delivers_sighup() {
    let mut child = ChildGuard::spawn(sh(
        "trap 'echo got-hup >&2; exit 3' HUP; echo ready >&2; while :; do sleep 0.05; done",
    ));
    eventually(STEP, "the trap to be set", || {
        child.stderr_text().contains("ready")
    });
    assert!(child.signal(libc::SIGHUP));
    let status = child.wait_exit(STEP).expect("exits after SIGHUP");
    assert_eq!(status.code(), Some(3));
    assert!(child.stderr_text().contains("got-hup"));
}

#[test]
fn child_guard_drop_kills() {
    let child = ChildGuard::spawn(sh("exec sleep 600"));
    let pid = child.pid();
    let stat = ProcStat::of(pid).expect("the child exists");
    drop(child);
    assert!(process_gone(pid, &stat), "killed and reaped by drop");
}

#[test]
fn cmd_isolates_the_environment() {
    let out = Cmd::new("sh")
        .args([
            "-c",
            "echo \"$HOME\"; echo \"${MCO_CONFIG-unset}\"; echo \"$EXTRA\"; cat; echo oops >&2; exit 3",
        ])
        .env("EXTRA", "given")
        .stdin("from stdin\n")
        .run();
    out.assert_exit(3);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert_ne!(Some(lines[0]), std::env::var("HOME").ok().as_deref());
    assert!(
        lines[0].starts_with(&*std::env::temp_dir().to_string_lossy()),
        "{out:?}"
    );
    assert_eq!(&lines[1..], ["unset", "given", "from stdin"]);
    assert_eq!(out.stderr, "oops\n");
    assert!(out.command.starts_with("sh -c "), "{}", out.command);
}

#[test]
fn assert_exit_shows_stdout_and_stderr() {
    let out = Cmd::new("sh")
        .args(["-c", "echo said-this; echo and-that >&2; exit 2"])
        .run();
    let err = catch_unwind(|| {
        out.assert_exit(0);
    })
    .expect_err("exit 2 is not 0");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("expected exit status 0"), "{msg}");
    assert!(msg.contains("status: 2"), "{msg}");
    assert!(msg.contains("said-this"), "{msg}");
    assert!(msg.contains("and-that"), "{msg}");
}

#[test]
fn cmd_kills_and_fails_on_timeout() {
    let cmd = Cmd::new("sh")
        .args(["-c", "echo started; exec sleep 600"])
        .timeout(Duration::from_millis(300));
    let err = catch_unwind(|| cmd.run()).expect_err("times out");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("did not exit within 300ms"), "{msg}");
    assert!(msg.contains("started"), "{msg}");
}

#[tokio::test]
async fn cmd_runs_off_the_runtime() {
    let out = timeout(STEP, Cmd::new("sh").args(["-c", "echo async"]).run_async())
        .await
        .expect("finishes in time");
    out.assert_success().assert_stdout_eq("async\n");
}

#[test]
fn bin_dir_is_the_profile_directory() {
    assert!(bin_dir().join("deps").is_dir(), "{}", bin_dir().display());
}

#[test]
#[should_panic(expected = "run cargo build --bins first")]
fn bin_path_explains_a_missing_binary() {
    bin_path("no-such-mco-binary");
}
