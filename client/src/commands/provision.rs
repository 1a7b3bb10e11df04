//! `mco provision run|status`.

use std::io::Write;
use std::path::Path;

use crate::cli::ProvisionCommand;
use crate::error::ClientError;
use crate::provision::config::ProvisionerConfig;
use crate::provision::run::{counts, Provisioner};
use crate::provision::state::{self, Status};

use super::{io, Exit};

/// Runs a `provision` verb; `config` is the provisioner's config file.
pub async fn run(
    config: Option<&Path>,
    command: &ProvisionCommand,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let path = config.ok_or_else(|| {
        ClientError::Usage("mco provision needs --config PROVISIONER.toml".into())
    })?;
    let cfg = ProvisionerConfig::load(path)?;
    match command {
        ProvisionCommand::Run => {
            let p = Provisioner::start(cfg).await?;
            p.run(shutdown()).await;
            Ok(0)
        }
        ProvisionCommand::Status { json } => status(&cfg, *json, out),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn status(cfg: &ProvisionerConfig, json: bool, out: &mut dyn Write) -> Result<Exit, ClientError> {
    let records = state::read(&cfg.state_file).map_err(|e| ClientError::Io(e.to_string()))?;
    if json {
        let v: serde_json::Map<String, serde_json::Value> = records
            .iter()
            .map(|(n, r)| {
                let mut r = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = r.as_object_mut() {
                    // The certificate is in the journal; status says only whether.
                    if let Some(c) = o.remove("certificate") {
                        o.insert("signed".into(), serde_json::Value::Bool(!c.is_null()));
                    }
                }
                (n.clone(), r)
            })
            .collect();
        let text = serde_json::to_string_pretty(&v).map_err(|e| ClientError::Io(e.to_string()))?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(0);
    }
    let width = records.keys().map(String::len).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<width$}  {:<11}  {:<10}  {:>8}  {:<20}  ERROR",
        "NODE", "STATUS", "STEP", "ATTEMPTS", "MASTER"
    )
    .map_err(io)?;
    for (node, r) in &records {
        let line = format!(
            "{:<width$}  {:<11}  {:<10}  {:>8}  {:<20}  {}",
            node,
            r.status.word(),
            r.step.as_deref().unwrap_or("-"),
            r.attempts,
            r.master.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
        writeln!(out, "{}", line.trim_end()).map_err(io)?;
    }
    let c = counts(&records);
    let n = |s: Status| c.get(&s).copied().unwrap_or(0);
    writeln!(
        out,
        "\nprovisioned: {}, in progress: {}, failed: {}, gave up: {}, refused: {}, waiting: {}",
        n(Status::Provisioned),
        n(Status::InProgress),
        n(Status::Failed),
        n(Status::GaveUp),
        n(Status::Refused),
        n(Status::Waiting)
    )
    .map_err(io)?;
    Ok(0)
}
