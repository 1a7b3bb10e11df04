//! Real processes, run through [`run`] and [`run_blocking`].

use super::*;
use std::time::{Duration, Instant};

/// A bound on how long any one call may hang before the test fails: far
/// beyond the limits the tests set, so it only catches a hang.
const HANG: Duration = Duration::from_secs(60);

fn limits(timeout: Duration) -> Limits {
    Limits::new(timeout, 64 * 1024)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .expect("the call did not return")
}

/// `/proc/PID/stat`'s state letter, `None` once the process is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Polls until `pid` is dead (gone, or a zombie nobody has reaped yet).
async fn wait_dead(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while matches!(state(pid), Some(s) if s != 'Z') {
        assert!(Instant::now() < deadline, "process {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn first_pid(out: &[u8]) -> u32 {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {:?}", String::from_utf8_lossy(out)))
}

#[tokio::test]
async fn a_grandchild_holding_the_pipes_is_killed_at_the_timeout() {
    let cmd = Cmd::shell("sleep 100 & echo $!; sleep 100");
    let f = within(run(cmd, &limits(Duration::from_millis(500))))
        .await
        .unwrap();
    assert!(f.timed_out);
    assert!(!f.success());
    assert_eq!(f.signal(), Some(9), "{:?}", f.status);
    assert_eq!(f.code(), None);
    // The output read before the timeout is kept.
    let grandchild = first_pid(&f.stdout);
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn a_grandchild_that_left_the_group_cannot_hold_the_call() {
    // setsid puts the sleeper out of reach of the group kill; it keeps the
    // pipes open, and the call must still end at the timeout.
    let cmd = Cmd::shell("setsid sleep 100 & echo $!; wait");
    let f = within(run(cmd, &limits(Duration::from_millis(500))))
        .await
        .unwrap();
    assert!(f.timed_out);
    let escaped = first_pid(&f.stdout);
    if let Some(pid) = rustix::process::Pid::from_raw(escaped as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    wait_dead(escaped).await;
}

#[tokio::test]
async fn a_dropped_call_kills_the_whole_group() {
    let dir = std::env::temp_dir().join(format!("mco-process-drop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let line = format!("sleep 100 & echo $! > {}; wait", pidfile.display());
    let l = limits(HANG);
    // Boxed, so that dropping `call` drops the future itself.
    let mut call = Box::pin(run(Cmd::shell(line), &l));
    // Drive the call until the grandchild is there, then drop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let grandchild = loop {
        tokio::select! {
            r = &mut call => panic!("the command ended: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the grandchild never started");
    };
    assert!(matches!(state(grandchild), Some(s) if s != 'Z'));
    drop(call);
    wait_dead(grandchild).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn output_past_the_bound_is_cut_and_flagged() {
    // 1 MiB: far more than a pipe holds, so it ends only if all is read.
    let cmd = Cmd::shell("head -c 1048576 /dev/zero | tr '\\0' x; printf abc >&2");
    let l = Limits {
        timeout: HANG,
        stdout_keep: 100,
        stderr_keep: 3,
        kill_group: true,
    };
    let f = within(run(cmd, &l)).await.unwrap();
    assert!(f.success());
    assert_eq!(f.stdout, vec![b'x'; 100]);
    assert!(f.stdout_truncated);
    // Exactly at the bound is not cut.
    assert_eq!(f.stderr, b"abc");
    assert!(!f.stderr_truncated);
}

#[tokio::test]
async fn stdin_is_delivered_and_closed() {
    let f = within(run(Cmd::new("cat").stdin("hello\n"), &limits(HANG)))
        .await
        .unwrap();
    assert_eq!(f.stdout, b"hello\n");
    // More than a pipe holds, while the output is read at the same time.
    let big = vec![b'y'; 1 << 20];
    let f = within(run(Cmd::new("wc").arg("-c").stdin(big), &limits(HANG)))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&f.stdout).trim(), "1048576");
    // Without stdin data, standard input is empty.
    let f = within(run(Cmd::shell("cat; echo end"), &limits(HANG)))
        .await
        .unwrap();
    assert_eq!(f.stdout, b"end\n");
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let f = within(run(
        Cmd::shell("echo out; echo err >&2; exit 7"),
        &limits(HANG),
    ))
    .await
    .unwrap();
    assert_eq!(f.code(), Some(7));
    assert_eq!(f.signal(), None);
    assert!(!f.success() && !f.timed_out);
    assert_eq!(
        (&f.stdout[..], &f.stderr[..]),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let f = within(run(Cmd::shell("kill -TERM $$"), &limits(HANG)))
        .await
        .unwrap();
    assert_eq!(f.signal(), Some(15));
    assert!(!f.timed_out);
    let f = within(run(Cmd::new("true"), &limits(HANG))).await.unwrap();
    assert!(f.success());
    assert_eq!(f.code(), Some(0));
}

#[tokio::test]
async fn a_program_that_cannot_start_is_a_spawn_error() {
    let e = run(Cmd::new("/nonexistent/program"), &limits(HANG))
        .await
        .unwrap_err();
    assert!(matches!(e, RunError::Spawn(_)), "{e:?}");
    assert_eq!(e.io().kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn environment_and_working_directory() {
    let cmd = Cmd::shell("echo \"$A-${B:-unset}-${HOME:-nohome}\"; pwd")
        .env("A", "1")
        .env("B", "2")
        .env_remove("B")
        .env_clear()
        .cwd("/tmp");
    let f = within(run(cmd, &limits(HANG))).await.unwrap();
    let tmp = std::fs::canonicalize("/tmp").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        format!("1-unset-nohome\n{}\n", tmp.display())
    );
    // A directory given by descriptor wins over a path.
    let dir = std::fs::File::open("/").unwrap();
    let cmd = Cmd::new("pwd").cwd("/tmp").cwd_fd(dir.into());
    let f = within(run(cmd, &limits(HANG))).await.unwrap();
    assert_eq!(f.stdout, b"/\n");
}

#[tokio::test]
async fn another_user_enters_a_directory_given_by_descriptor() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!("mco-process-user-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Only root can run a command as another user: as anyone else, as itself.
    let me = std::fs::metadata(&dir).unwrap();
    let (uid, gid) = if me.uid() == 0 {
        (65534, 65534)
    } else {
        (me.uid(), me.gid())
    };
    let fd = std::fs::File::open(&dir).unwrap();
    let cmd = Cmd::shell("id -u; pwd").as_user(uid, gid).cwd_fd(fd.into());
    let f = within(run(cmd, &limits(HANG))).await.unwrap();
    assert!(f.success(), "{}", String::from_utf8_lossy(&f.stderr));
    let real = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&f.stdout),
        format!("{uid}\n{}\n", real.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_blocking_runs_on_a_plain_thread() {
    let f = run_blocking(Cmd::shell("echo hi; exit 3"), &limits(HANG)).unwrap();
    assert_eq!((f.code(), &f.stdout[..]), (Some(3), &b"hi\n"[..]));
    let f = run_blocking(
        Cmd::shell("sleep 100 & echo $!; wait"),
        &limits(Duration::from_millis(300)),
    )
    .unwrap();
    assert!(f.timed_out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_dead(first_pid(&f.stdout)));
}

#[test]
fn a_disarmed_guard_kills_nothing() {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let mut guard = GroupGuard::new(Some(child.id()));
    guard.disarm();
    drop(guard);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    drop(GroupGuard::new(Some(child.id())));
    assert!(!child.wait().unwrap().success());
    kill_group(0);
    kill_group(1);
    kill_group(u32::MAX);
}
