//! `mco resource TYPE [NAME] [PROPERTY=VALUE …]`: the friendly form of
//! `mco rpc resource do|find|search`.
//!
//! With properties it ensures them (`do`) and prints each node's change table
//! and the fleet summary; with a name alone it shows the resource (`find`);
//! with `--search` it lists every resource of the type.

use std::io::Write;

use super::rpc::{action, discover_and_call, inputs, summary};
use super::{exit_code, io, Exit};
use crate::cli::ResourceArgs;
use crate::ddls::DdlStore;
use crate::error::ClientError;
use crate::output::{self, resource as show};
use mco_core::config::ClientConfig;

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &ResourceArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let store = DdlStore::load(&cfg.ddl_dirs)?;
    let mut words = vec![format!("type={}", args.kind)];
    let verb = if args.search {
        if let Some(n) = args.limit {
            words.push(format!("limit={n}"));
        }
        "search"
    } else {
        let name = args.name.as_deref().ok_or_else(|| {
            ClientError::Usage(format!(
                "give the {} resource's name, or --search to list them all",
                args.kind
            ))
        })?;
        words.push(format!("name={name}"));
        if args.properties.is_empty() && !args.noop {
            "find"
        } else {
            for p in &args.properties {
                if !p.contains('=') {
                    return Err(ClientError::Usage(format!(
                        "property {p:?} is not property=value"
                    )));
                }
                if p.starts_with("type=") || p.starts_with("name=") {
                    return Err(ClientError::Usage(format!(
                        "{p:?}: the type and name are given as the first two words"
                    )));
                }
            }
            words.extend(args.properties.iter().cloned());
            if args.noop {
                words.push("noop=true".into());
            }
            "do"
        }
    };
    let (ddl, act) = action(&store, "resource", verb)?;
    let data = inputs(act, &words)?;
    let Some(answered) =
        discover_and_call(cfg, &args.target, ddl, verb, data, args.json, out).await?
    else {
        return Ok(1);
    };
    let replies = &answered.collected.replies;
    if args.json {
        output::write_json(out, "resource", verb, replies).map_err(io)?;
    } else {
        match verb {
            "do" => {
                show::write_changes(out, replies, args.verbose).map_err(io)?;
                writeln!(out).map_err(io)?;
                writeln!(out, "Summary: {}", show::Tally::of(replies).line()).map_err(io)?;
            }
            "find" => show::write_found(out, &args.kind, replies).map_err(io)?,
            _ => show::write_search(out, &args.kind, replies, args.verbose).map_err(io)?,
        }
        summary(out, &answered)?;
    }
    Ok(exit_code(&answered.found, &answered.collected))
}
