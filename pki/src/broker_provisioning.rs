//! The provisioning broker's `nats-server` configuration.
//!
//! Nodes in provisioning mode have no certificate yet: they reach this broker over TLS (its
//! certificate from the collective's CA, checked by the node against the CA its image shipped)
//! and authenticate with the bootstrap token, as NATS user [`BROKER_USER`] with the token as
//! password. The token ships in every image, so whoever holds it gets exactly what provisioning
//! needs and nothing more: the `provisioning.>` subjects, to publish and subscribe. No
//! `$JS.API.>`, no `$KV.>`, no `$SYS.>`: JetStream is not even enabled here, and the
//! provisioner's expected-node registry lives on the main collective's broker, where only
//! certificates of the collective reach it.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::broker::{bad, quoted};
use super::PkiError;
use mco_core::provisioning::{BROKER_USER, PROVISIONING_COLLECTIVE};

/// What goes into [`provisioning_broker_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisioningBrokerOptions {
    /// `host:port` for client connections.
    pub listen: String,
    /// The broker's certificate (a broker certificate from the collective's CA).
    pub server_cert: PathBuf,
    /// The broker's private key.
    pub server_key: PathBuf,
    /// The bootstrap token.
    pub token: String,
}

/// The subjects a token holder may publish and subscribe to.
pub fn token_subjects() -> Vec<String> {
    vec![format!("{PROVISIONING_COLLECTIVE}.>")]
}

/// A `nats-server` configuration for the provisioning broker (see the module docs). It holds
/// the token: keep the file readable by nats-server only.
pub fn provisioning_broker_config(opts: &ProvisioningBrokerOptions) -> Result<String, PkiError> {
    if opts.token.len() < 16 {
        return Err(bad(
            "the bootstrap token is shorter than 16 characters: anyone could guess it",
        ));
    }
    if opts.token.chars().any(char::is_whitespace) {
        return Err(bad("the bootstrap token contains white space"));
    }
    let listen = quoted("listen", &opts.listen)?;
    let cert_file = quoted("server certificate", &opts.server_cert.to_string_lossy())?;
    let key_file = quoted("server key", &opts.server_key.to_string_lossy())?;
    let token = quoted("bootstrap token", &opts.token)?;
    let subjects: Vec<String> = token_subjects()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let subjects = subjects.join(", ");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# nats-server configuration for mco's provisioning broker."
    );
    let _ = writeln!(
        out,
        "# It holds the bootstrap token: keep it readable by nats-server only (mode 0600)."
    );
    let _ = writeln!(
        out,
        "# The token admits user {BROKER_USER:?} to the provisioning subjects only; JetStream"
    );
    let _ = writeln!(
        out,
        "# is off, and the expected-node registry lives on the main collective's broker."
    );
    let _ = writeln!(out, "listen: {listen}\n");
    let _ = writeln!(out, "tls {{");
    let _ = writeln!(out, "  cert_file: {cert_file}");
    let _ = writeln!(out, "  key_file: {key_file}");
    let _ = writeln!(out, "}}\n");
    let _ = writeln!(out, "authorization {{");
    let _ = writeln!(out, "  users = [");
    let _ = writeln!(out, "    {{");
    let _ = writeln!(out, "      user: \"{BROKER_USER}\"");
    let _ = writeln!(out, "      password: {token}");
    let _ = writeln!(out, "      permissions: {{");
    let _ = writeln!(out, "        publish: {{ allow: [{subjects}] }}");
    let _ = writeln!(out, "        subscribe: {{ allow: [{subjects}] }}");
    let _ = writeln!(out, "      }}");
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(token: &str) -> ProvisioningBrokerOptions {
        ProvisioningBrokerOptions {
            listen: "0.0.0.0:4223".into(),
            server_cert: "/pki/prov.pem".into(),
            server_key: "/pki/prov.key".into(),
            token: token.into(),
        }
    }

    #[test]
    fn the_token_user_gets_the_provisioning_subjects_only() {
        let text = provisioning_broker_config(&opts("0123456789abcdef-token")).unwrap();
        assert!(text.contains("user: \"provisioning\""), "{text}");
        assert!(
            text.contains("password: \"0123456789abcdef-token\""),
            "{text}"
        );
        assert!(
            text.contains("publish: { allow: [\"provisioning.>\"] }"),
            "{text}"
        );
        assert!(
            text.contains("subscribe: { allow: [\"provisioning.>\"] }"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("jetstream")), "{text}");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("token:")),
            "{text}"
        );
    }

    #[test]
    fn weak_or_unquotable_tokens_are_refused() {
        for bad in [
            "short",
            "0123456789abcdef\"x",
            "0123456789abcdef x",
            "0123456789abcdef\\",
        ] {
            assert!(provisioning_broker_config(&opts(bad)).is_err(), "{bad:?}");
        }
    }
}
