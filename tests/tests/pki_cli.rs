//! `mco pki …` as a user runs it: the real binary, with no client configuration and no broker,
//! and its files read back by the real `openssl`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mco_tests::{mco, Cmd, Output};

/// Runs `openssl ARGS`.
///
/// # Panics
///
/// If openssl cannot be started: these tests need it (`apt-get install openssl`).
#[track_caller]
fn openssl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("openssl").args(args).run()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `mco pki --dir DIR ARGS`, expected to succeed.
#[track_caller]
fn pki(dir: &Path, args: &[&str]) -> Output {
    let out = mco(["pki", "--dir", dir.to_str().unwrap()]
        .iter()
        .chain(args)
        .collect::<Vec<_>>());
    out.assert_success();
    out
}

/// The value after `label:` on its line of `mco pki show` output.
fn field(show: &str, label: &str) -> String {
    let prefix = format!("{label}:");
    show.lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label} in\n{show}"))
        .trim()
        .to_string()
}

/// A CA with alice (user), web1 (node, with an IP) and bob (user, from a CSR made elsewhere).
struct Fleet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bob_dir: PathBuf,
}

fn fleet() -> Fleet {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let bob_dir = tmp.path().join("bob");
    pki(&dir, &["ca", "init"]);
    pki(&dir, &["issue", "alice", "--kind", "user"]);
    pki(
        &dir,
        &[
            "issue", "web1", "--kind", "node", "--ip", "10.1.2.3", "--days", "30",
        ],
    );
    pki(
        &dir,
        &[
            "csr",
            "bob",
            "--kind",
            "user",
            "--out",
            bob_dir.to_str().unwrap(),
        ],
    );
    let csr = bob_dir.join("bob.csr");
    pki(&dir, &["sign", csr.to_str().unwrap()]);
    Fleet {
        _tmp: tmp,
        dir,
        bob_dir,
    }
}

#[test]
fn works_without_a_config_or_broker_in_the_default_directory() {
    let home = tempfile::tempdir().unwrap();
    // A config file that would not load: `mco pki` must not read it.
    let config_dir = home.path().join(".config/mco");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("client.toml"), "this is = = not toml").unwrap();
    let out = Cmd::mco()
        .home(home.path())
        .args(["pki", "ca", "init"])
        .run();
    out.assert_success();
    let dir = home.path().join(".config/mco/pki");
    assert!(out.stdout.contains(&dir.display().to_string()), "{out:?}");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);

    let again = Cmd::mco()
        .home(home.path())
        .args(["pki", "ca", "init"])
        .run();
    again.assert_exit(1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    Cmd::mco()
        .home(home.path())
        .args(["pki", "ca", "init", "--force"])
        .run()
        .assert_success();
}

#[test]
fn files_have_their_modes_and_the_key_of_a_csr_stays_put() {
    let f = fleet();
    for name in ["ca", "alice", "web1"] {
        assert_eq!(mode(&f.dir.join(format!("{name}.key"))), 0o600, "{name}");
        assert_eq!(mode(&f.dir.join(format!("{name}.pem"))), 0o644, "{name}");
    }
    assert_eq!(mode(&f.bob_dir.join("bob.key")), 0o600);
    assert_eq!(mode(&f.dir.join("bob.pem")), 0o644);
    assert!(!f.dir.join("bob.key").exists());
}

#[test]
fn openssl_reads_certificates_and_agrees_with_show() {
    let f = fleet();
    for (name, subject) in [("alice", "CN = user:alice"), ("web1", "CN = node:web1")] {
        let pem = f.dir.join(format!("{name}.pem"));
        let text = openssl(["x509", "-noout", "-text", "-in", pem.to_str().unwrap()]);
        text.assert_success();
        let t = &text.stdout;
        assert!(t.contains(&format!("Subject: {subject}")), "{t}");
        assert!(t.contains("Issuer: CN = mco collective CA"), "{t}");
        assert!(t.contains("Public Key Algorithm: ED25519"), "{t}");
        assert!(t.contains("CA:FALSE"), "{t}");
        // Users and nodes are TLS clients only; only broker certificates serve TLS.
        assert!(t.contains("TLS Web Client Authentication"), "{t}");
        assert!(!t.contains("TLS Web Server Authentication"), "{t}");

        let show = pki(&f.dir, &["show", pem.to_str().unwrap()]).stdout.clone();
        let ids = openssl([
            "x509",
            "-noout",
            "-serial",
            "-fingerprint",
            "-sha256",
            "-in",
            pem.to_str().unwrap(),
        ]);
        ids.assert_success();
        let serial = ids
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("serial="))
            .map(str::to_lowercase)
            .expect("a serial");
        assert_eq!(field(&show, "Serial"), serial.trim_start_matches('0'));
        let fp = ids
            .stdout
            .lines()
            .find_map(|l| l.split_once("Fingerprint=").map(|(_, v)| v.to_string()))
            .expect("a fingerprint");
        assert_eq!(field(&show, "SHA-256"), fp);

        let verify = openssl([
            "verify",
            "-CAfile",
            f.dir.join("ca.pem").to_str().unwrap(),
            pem.to_str().unwrap(),
        ]);
        verify.assert_success();
        assert!(verify.stdout.contains(": OK"), "{verify:?}");
    }
    let web1 = openssl([
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        f.dir.join("web1.pem").to_str().unwrap(),
    ]);
    web1.assert_success();
    assert!(
        web1.stdout.contains("DNS:web1, IP Address:10.1.2.3"),
        "{web1:?}"
    );

    let ca = openssl([
        "x509",
        "-noout",
        "-text",
        "-in",
        f.dir.join("ca.pem").to_str().unwrap(),
    ]);
    assert!(ca.stdout.contains("CA:TRUE, pathlen:0"), "{ca:?}");
    assert!(ca.stdout.contains("Certificate Sign, CRL Sign"), "{ca:?}");
    for key in ["ca.key", "alice.key"] {
        let k = openssl([
            "pkey",
            "-noout",
            "-text",
            "-in",
            f.dir.join(key).to_str().unwrap(),
        ]);
        k.assert_success();
        assert!(k.stdout.contains("ED25519 Private-Key"), "{k:?}");
    }
}

#[test]
fn show_reads_der_written_by_openssl() {
    let f = fleet();
    let der = f.dir.join("alice.der");
    openssl([
        "x509",
        "-outform",
        "DER",
        "-in",
        f.dir.join("alice.pem").to_str().unwrap(),
        "-out",
        der.to_str().unwrap(),
    ])
    .assert_success();
    let from_der = pki(&f.dir, &["show", der.to_str().unwrap()]);
    let from_pem = pki(&f.dir, &["show", f.dir.join("alice.pem").to_str().unwrap()]);
    assert_eq!(from_der.stdout, from_pem.stdout);
    assert!(from_der.stdout.contains("Subject:     CN=user:alice"));
}

#[test]
fn openssl_verifies_the_csr() {
    let f = fleet();
    let csr = f.bob_dir.join("bob.csr");
    let out = openssl([
        "req",
        "-noout",
        "-text",
        "-verify",
        "-in",
        csr.to_str().unwrap(),
    ]);
    out.assert_success();
    assert!(out.stdout.contains("Subject: CN = user:bob"), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("verify OK"),
        "{out:?}"
    );
    let show = pki(&f.dir, &["show", csr.to_str().unwrap()]);
    assert!(show.stdout.contains("Signature:   verifies"), "{show:?}");
    // The certificate the CA signed carries bob's own key.
    let cert_key = openssl([
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        f.dir.join("bob.pem").to_str().unwrap(),
    ]);
    let own_key = openssl([
        "pkey",
        "-pubout",
        "-in",
        f.bob_dir.join("bob.key").to_str().unwrap(),
    ]);
    assert_eq!(cert_key.stdout, own_key.stdout);
}

#[test]
fn revocation_reaches_openssl_through_the_crl() {
    let f = fleet();
    let show = pki(&f.dir, &["show", f.dir.join("alice.pem").to_str().unwrap()]);
    let alice_serial = field(&show.stdout, "Serial");
    let revoked = pki(&f.dir, &["revoke", "alice"]);
    assert!(
        revoked
            .stdout
            .contains(&format!("Revoked user:alice (serial {alice_serial})")),
        "{revoked:?}"
    );
    let crl = f.dir.join("ca.crl");
    let text = openssl(["crl", "-noout", "-text", "-in", crl.to_str().unwrap()]);
    text.assert_success();
    assert!(
        text.stdout
            .contains(&format!("Serial Number: {}", alice_serial.to_uppercase())),
        "{text:?}"
    );
    assert!(text.stdout.contains("Next Update:"), "{text:?}");
    assert!(text.stdout.contains("X509v3 CRL Number"), "{text:?}");
    let verify_crl = openssl([
        "crl",
        "-noout",
        "-CAfile",
        f.dir.join("ca.pem").to_str().unwrap(),
        "-in",
        crl.to_str().unwrap(),
    ]);
    verify_crl.assert_success();
    assert!(
        format!("{}{}", verify_crl.stdout, verify_crl.stderr).contains("verify OK"),
        "{verify_crl:?}"
    );

    let check = |name: &str| {
        openssl([
            "verify",
            "-crl_check",
            "-CRLfile",
            crl.to_str().unwrap(),
            "-CAfile",
            f.dir.join("ca.pem").to_str().unwrap(),
            f.dir.join(format!("{name}.pem")).to_str().unwrap(),
        ])
    };
    let alice = check("alice");
    assert_ne!(alice.status, 0, "{alice:?}");
    assert!(
        format!("{}{}", alice.stdout, alice.stderr).contains("certificate revoked"),
        "{alice:?}"
    );
    check("web1").assert_success();

    let show_crl = pki(&f.dir, &["show", crl.to_str().unwrap()]);
    assert!(show_crl.stdout.contains("Revoked:     1"), "{show_crl:?}");
    assert!(show_crl.stdout.contains(&alice_serial), "{show_crl:?}");

    // The broker configuration now leaves alice out.
    pki(
        &f.dir,
        &["issue", "broker", "--kind", "broker", "--ip", "127.0.0.1"],
    );
    let conf = pki(&f.dir, &["broker-config", "--collective", "mcollective"]);
    assert!(!conf.stdout.contains("CN=user:alice"), "{conf:?}");
    assert!(conf.stdout.contains("\"CN=user:bob\""), "{conf:?}");
    assert!(conf.stdout.contains("\"CN=node:web1\""), "{conf:?}");
    assert!(!conf.stdout.contains("CN=node:broker"), "{conf:?}");
}

#[test]
fn usage_errors_exit_64_and_file_errors_exit_1() {
    let f = fleet();
    let d = f.dir.to_str().unwrap();
    let bad_name = mco(["pki", "--dir", d, "issue", "no/slash", "--kind", "user"]);
    bad_name.assert_exit(64);
    assert!(bad_name.stderr.contains("not a valid name"), "{bad_name:?}");
    let user_ip = mco([
        "pki", "--dir", d, "issue", "carl", "--kind", "user", "--ip", "10.0.0.1",
    ]);
    user_ip.assert_exit(64);
    let again = mco(["pki", "--dir", d, "issue", "alice", "--kind", "user"]);
    again.assert_exit(1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    let unknown = mco(["pki", "--dir", d, "revoke", "nobody"]);
    unknown.assert_exit(64);
    let no_ca = mco([
        "pki",
        "--dir",
        f.bob_dir.to_str().unwrap(),
        "issue",
        "x",
        "--kind",
        "user",
    ]);
    no_ca.assert_exit(1);
    assert!(no_ca.stderr.contains("no CA in"), "{no_ca:?}");
    let garbage = f.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    mco(["pki", "--dir", d, "show", garbage.to_str().unwrap()]).assert_exit(1);
    let no_broker = mco([
        "pki",
        "--dir",
        d,
        "broker-config",
        "--collective",
        "mcollective",
    ]);
    no_broker.assert_exit(1);
    assert!(
        no_broker.stderr.contains("mco pki issue broker"),
        "{no_broker:?}"
    );
    let users_only = mco([
        "pki",
        "--dir",
        d,
        "sign",
        "--allow-kind",
        "user",
        "--force",
        f.bob_dir.join("bob.csr").to_str().unwrap(),
    ]);
    users_only.assert_success();
    pki(&f.dir, &["csr", "web9", "--kind", "node"]);
    let nodes_refused = mco([
        "pki",
        "--dir",
        d,
        "sign",
        "--allow-kind",
        "user",
        f.dir.join("web9.csr").to_str().unwrap(),
    ]);
    nodes_refused.assert_exit(64);
    assert!(nodes_refused
        .stderr
        .contains("node certificates are not signed"));
}
