//! `mco inventory NODE`: one node in full.

use std::io::Write;

use mco_core::config::ClientConfig;
use mco_core::facts::flatten;
use serde_json::Value;

use super::{io, Exit};
use crate::cli::TargetArgs;
use crate::error::{ClientError, ErrorKind};
use crate::rpc::Call;
use crate::session::Session;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) async fn run(
    cfg: &ClientConfig,
    node: &str,
    json: bool,
    from_registry: bool,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    if from_registry {
        let Some(d) = super::registry::node(cfg, node, args).await? else {
            writeln!(out, "{node} is not in the inventory registry").map_err(io)?;
            return Ok(4);
        };
        return show(node, &d, json, out);
    }
    let (plan, session) = Session::open(cfg, args).await?;
    // A node is asked by name: the target flags' filter is not its business.
    let call = Call {
        filter: Default::default(),
        ..Call::for_plan(&plan, "rpcutil", "inventory", Default::default())
    };
    let timeout = plan
        .timeout
        .unwrap_or(plan.discovery_timeout + std::time::Duration::from_secs(5));
    let asked = session.ask(&call, node, timeout).await;
    session.close();
    let reply = match asked {
        Ok(reply) => reply,
        // A reply that failed verification is no reply; the session said why.
        Err(e) if matches!(e.kind(), ErrorKind::NoResponders | ErrorKind::Verification) => {
            writeln!(out, "Did not receive any results from node {node}").map_err(io)?;
            return Ok(4);
        }
        Err(e) => return Err(e),
    };
    if reply.status != mco_core::Status::Ok {
        writeln!(out, "{node}: {}: {}", reply.status.label(), reply.message).map_err(io)?;
        return Ok(2);
    }
    show(node, &reply.data, json, out)
}

/// Prints one node's inventory: `rpcutil inventory`'s answer, or its registry entry.
fn show(
    node: &str,
    d: &serde_json::Map<String, Value>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    if json {
        let pretty = serde_json::to_string_pretty(&Value::Object(d.clone())).unwrap_or_default();
        writeln!(out, "{pretty}").map_err(io)?;
        return Ok(0);
    }
    let get = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
    writeln!(out, "Inventory for {node}:\n").map_err(io)?;
    if let Some(when) = d.get("registered") {
        writeln!(out, "   Registered: {}\n", text(when)).map_err(io)?;
    }
    writeln!(out, "   Server Statistics:").map_err(io)?;
    writeln!(
        out,
        "                      Version: {}",
        text(&get("version"))
    )
    .map_err(io)?;
    writeln!(
        out,
        "                       Uptime: {} s",
        text(&get("uptime"))
    )
    .map_err(io)?;
    if let Value::Object(stats) = get("stats") {
        for (label, key) in [
            ("Total Requests", "total"),
            ("Succeeded", "ok"),
            ("Failed", "failed"),
            ("Filtered", "filtered"),
            ("Busy", "busy"),
            ("Replies", "replies"),
        ] {
            let v = stats.get(key).map(text).unwrap_or_default();
            writeln!(out, "{label:>29}: {v}").map_err(io)?;
        }
        if let Some(Value::Object(dropped)) = stats.get("dropped") {
            let parts: Vec<String> = dropped
                .iter()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let shown = if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(" ")
            };
            writeln!(out, "{:>29}: {shown}", "Dropped").map_err(io)?;
        }
    }
    for (title, key) in [
        ("Agents", "agents"),
        ("Classes", "classes"),
        ("Collectives", "collectives"),
    ] {
        writeln!(out, "\n   {title}:").map_err(io)?;
        let items: Vec<String> = get(key)
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        if items.is_empty() {
            writeln!(out, "      (none)").map_err(io)?;
        }
        for i in items {
            writeln!(out, "      {i}").map_err(io)?;
        }
    }
    writeln!(out, "\n   Facts:").map_err(io)?;
    if let Value::Object(facts) = get("facts") {
        for (k, v) in flatten(&facts) {
            writeln!(out, "      {k} => {}", text(v)).map_err(io)?;
        }
    }
    Ok(0)
}
