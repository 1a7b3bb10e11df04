//! `check_mco_nrpe` inside a real monitoring core: Debian's `nagios4`, headless, with its own
//! configuration in a temporary directory, runs a service whose command is `check_mco_nrpe`
//! against a live fleet; the test reads the state, plugin output and performance data the core
//! recorded in its own `status.dat`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mco_tests::{bin_path, eventually, ChildGuard, NatsServer, Responder, ResponderSpec};

const NAGIOS: &str = "/usr/sbin/nagios4";

/// A responder whose `check_app` prints `script`'s output.
fn node(nats: &NatsServer, id: &str, script: &str, dir: &Path) -> Responder {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("app.sh"), script).unwrap();
    std::fs::write(
        d.join("checks.cfg"),
        format!("command[check_app]=/bin/sh {}/app.sh\n", d.display()),
    )
    .unwrap();
    let mut spec = ResponderSpec::new(id).extra(&format!(
        "[plugin.nrpe]\nconf_dir = {:?}\n",
        d.display().to_string()
    ));
    spec.security = Some("insecure = true\ndefault_policy = \"allow\"\n".into());
    Responder::start(nats, spec)
}

/// The main nagios.cfg: everything under `dir`, running as the current user (root here is
/// allowed because nagios_user/nagios_group name it), one-second interval units, external
/// commands on, no notifications, no retention.
fn nagios_cfg(dir: &Path, user: &str, group: &str) -> String {
    let d = dir.display();
    format!(
        "log_file={d}/nagios.log\n\
         cfg_file={d}/objects.cfg\n\
         object_cache_file={d}/objects.cache\n\
         precached_object_file={d}/objects.precache\n\
         status_file={d}/status.dat\n\
         status_update_interval=1\n\
         nagios_user={user}\n\
         nagios_group={group}\n\
         check_external_commands=1\n\
         command_file={d}/nagios.cmd\n\
         lock_file={d}/nagios.lock\n\
         temp_file={d}/nagios.tmp\n\
         temp_path={d}\n\
         check_result_path={d}/checkresults\n\
         retain_state_information=0\n\
         state_retention_file={d}/retention.dat\n\
         interval_length=1\n\
         use_syslog=0\n\
         enable_notifications=0\n\
         enable_event_handlers=0\n\
         check_result_reaper_frequency=1\n\
         service_check_timeout=60\n\
         illegal_macro_output_chars=`~$&|'\"<>\n\
         query_socket={d}/nagios.qh\n"
    )
}

fn objects_cfg(check_command_line: &str) -> String {
    format!(
        "define timeperiod {{\n  timeperiod_name 24x7\n  alias always\n\
         {days}}}\n\
         define command {{\n  command_name do_nothing\n  command_line /bin/true\n}}\n\
         define command {{\n  command_name check_mco_nrpe\n  command_line {check_command_line}\n}}\n\
         define contact {{\n  contact_name nobody\n  service_notification_period 24x7\n  host_notification_period 24x7\n  \
         service_notification_options n\n  host_notification_options n\n  service_notification_commands do_nothing\n  \
         host_notification_commands do_nothing\n}}\n\
         define host {{\n  host_name fleet\n  address 127.0.0.1\n  check_command do_nothing\n  max_check_attempts 1\n  \
         check_period 24x7\n  notification_period 24x7\n  contacts nobody\n}}\n\
         define service {{\n  host_name fleet\n  service_description app\n  check_command check_mco_nrpe!check_app\n  \
         max_check_attempts 1\n  check_interval 3600\n  retry_interval 3600\n  check_period 24x7\n  \
         notification_period 24x7\n  contacts nobody\n}}\n",
        days = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
            .iter()
            .map(|d| format!("  {d} 00:00-24:00\n"))
            .collect::<String>()
    )
}

/// The `servicestatus` block of `fleet`/`app` in status.dat, as key → value.
fn service_status(status_dat: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(status_dat).ok()?;
    for block in text.split("servicestatus {").skip(1) {
        let body = block.split('}').next().unwrap_or_default();
        let fields: BTreeMap<String, String> = body
            .lines()
            .filter_map(|l| l.trim().split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if fields.get("host_name").map(String::as_str) == Some("fleet")
            && fields.get("service_description").map(String::as_str) == Some("app")
        {
            return Some(fields);
        }
    }
    None
}

fn id_name(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn nagios_records_the_aggregated_state_output_and_perfdata() {
    assert!(
        Path::new(NAGIOS).is_file(),
        "{NAGIOS} is missing: run scripts/install-deps (Debian package nagios4-core)"
    );
    let nats = NatsServer::start();
    let work = tempfile::tempdir().unwrap();
    let _fleet = [
        node(
            &nats,
            "n-ok",
            "echo 'APP OK - fine|time=0.5s;1;2;0 hits=10c'\nexit 0\n",
            work.path(),
        ),
        node(
            &nats,
            "n-warn",
            "echo 'APP WARNING - slow|time=2.5s;1;2;0 hits=30c'\necho 'queue depth 12'\nexit 1\n",
            work.path(),
        ),
        node(
            &nats,
            "n-crit",
            "echo 'APP CRITICAL - down'\necho 'connection refused'\nexit 2\n",
            work.path(),
        ),
    ];

    let client = work.path().join("client.toml");
    std::fs::write(&client, "[security]\ninsecure = true\n").unwrap();
    let core = work.path().join("nagios");
    std::fs::create_dir_all(core.join("checkresults")).unwrap();
    let line = format!(
        "{} --config {} --nats {} -t 20s --discovery-window 1s $ARG1$",
        bin_path("check_mco_nrpe").display(),
        client.display(),
        nats.url()
    );
    std::fs::write(core.join("objects.cfg"), objects_cfg(&line)).unwrap();
    let cfg = core.join("nagios.cfg");
    std::fs::write(&cfg, nagios_cfg(&core, &id_name("-un"), &id_name("-gn"))).unwrap();

    let verify = Command::new(NAGIOS).arg("-v").arg(&cfg).output().unwrap();
    assert!(
        verify.status.success(),
        "nagios rejects the config:\n{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let mut cmd = Command::new(NAGIOS);
    cmd.arg(&cfg);
    let mut nagios = ChildGuard::spawn(cmd);

    // Ask for the check now rather than at the scheduled time, through the external command
    // pipe, once the core has made it.
    let pipe = core.join("nagios.cmd");
    eventually(
        Duration::from_secs(30),
        "nagios to open its command pipe",
        || pipe.exists(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut f = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
    writeln!(f, "[{now}] SCHEDULE_FORCED_SVC_CHECK;fleet;app;{now}").unwrap();
    drop(f);

    let status_dat = core.join("status.dat");
    let mut status = BTreeMap::new();
    eventually(
        Duration::from_secs(60),
        "nagios to record the service check",
        || match service_status(&status_dat) {
            Some(s) if s.get("has_been_checked").map(String::as_str) == Some("1") => {
                status = s;
                true
            }
            _ => false,
        },
    );

    assert_eq!(status["current_state"], "2", "{status:#?}");
    assert_eq!(
        status["plugin_output"], "check_app: OK: 1 WARNING: 1 CRITICAL: 1 UNKNOWN: 0",
        "{status:#?}"
    );
    // status.dat escapes the newlines of the long output.
    assert_eq!(
        status["long_plugin_output"],
        "CRITICAL: n-crit\\nWARNING: n-warn\\n[CRITICAL] n-crit: APP CRITICAL - down\\n    connection refused\\n\
         [WARNING] n-warn: APP WARNING - slow\\n    queue depth 12",
        "{status:#?}"
    );
    let perf = &status["performance_data"];
    assert!(
        perf.starts_with("total=3 ok=1 warning=1 critical=1 unknown=0 checktime="),
        "{status:#?}"
    );
    assert!(
        perf.ends_with(
            " time_min=0.5s;;;; time_avg=1.5s;;;; time_max=2.5s;;;; hits_min=10c;;;; hits_avg=20c;;;; hits_max=30c;;;;"
        ),
        "{status:#?}"
    );

    nagios.signal(libc::SIGTERM);
    nagios.wait_exit(Duration::from_secs(30));
}
