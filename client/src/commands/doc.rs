//! `mco plugin doc [AGENT]`: documentation from the DDL.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{io, Exit};
use crate::ddls::DdlStore;
use crate::error::ClientError;

pub(super) fn run(
    cfg: &ClientConfig,
    agent: Option<&str>,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let store = DdlStore::load(&cfg.ddl_dirs)?;
    let Some(agent) = agent else {
        writeln!(out, "Agents:\n").map_err(io)?;
        for d in store.all() {
            writeln!(out, "  {:<20} {}", d.metadata.name, d.metadata.description).map_err(io)?;
        }
        return Ok(0);
    };
    let ddl = store
        .get(agent)
        .ok_or_else(|| ClientError::Usage(format!("no DDL for agent '{agent}'")))?;
    let m = &ddl.metadata;
    writeln!(
        out,
        "{}\n{}\n\n{}\n",
        m.name,
        "=".repeat(m.name.len()),
        m.description
    )
    .map_err(io)?;
    writeln!(out, "      Author: {}\n     Version: {}\n     License: {}\n     Timeout: {} s\n   Home Page: {}\n", m.author, m.version, m.license, m.timeout, m.url).map_err(io)?;
    writeln!(
        out,
        "ACTIONS:\n========\n   {}\n",
        ddl.actions
            .iter()
            .map(|a| a.action.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
    .map_err(io)?;
    for a in &ddl.actions {
        writeln!(
            out,
            "   {} action:\n   {}\n       {}\n",
            a.action,
            "-".repeat(a.action.len() + 8),
            a.description
        )
        .map_err(io)?;
        writeln!(out, "       INPUT:").map_err(io)?;
        if a.input.is_empty() {
            writeln!(out, "           This action does not have any inputs").map_err(io)?;
        }
        for (name, i) in &a.input {
            writeln!(out, "           {name}:\n              Description: {}\n                   Prompt: {}\n                     Type: {}", i.description, i.prompt, i.kind.as_str()).map_err(io)?;
            if let Some(v) = &i.validation {
                writeln!(out, "               Validation: {v}").map_err(io)?;
            }
            if let Some(l) = i.maxlength {
                writeln!(out, "                   Length: {l}").map_err(io)?;
            }
            if let Some(list) = &i.list {
                let vals: Vec<String> = list.iter().map(|v| v.to_string()).collect();
                writeln!(out, "           Allowed values: {}", vals.join(", ")).map_err(io)?;
            }
            if let Some(d) = &i.default {
                writeln!(out, "                  Default: {d}").map_err(io)?;
            }
            writeln!(out, "                 Optional: {}\n", i.optional).map_err(io)?;
        }
        writeln!(out, "\n       OUTPUT:").map_err(io)?;
        for (name, o) in &a.output {
            writeln!(
                out,
                "           {name}:\n              Description: {}\n               Display As: {}",
                o.description, o.display_as
            )
            .map_err(io)?;
            if let Some(d) = &o.default {
                writeln!(out, "            Default Value: {d}").map_err(io)?;
            }
            writeln!(out).map_err(io)?;
        }
        if !a.aggregate.is_empty() {
            let aggs: Vec<String> = a
                .aggregate
                .iter()
                .map(|g| format!("{}({})", g.function, g.field().unwrap_or("")))
                .collect();
            writeln!(out, "       SUMMARIES: {}\n", aggs.join(", ")).map_err(io)?;
        }
    }
    Ok(0)
}
