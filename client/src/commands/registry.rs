//! `mco registry init` and the verbs that answer from the inventory registry instead of the
//! nodes: `mco find --stale`, `mco facts --from-registry`, `mco inventory --from-registry`.

use std::io::Write;
use std::time::Duration;

use mco_core::config::ClientConfig;
use mco_core::wire::now_ms;
use serde_json::{json, Map, Value};

use super::{io, Exit};
use crate::error::ClientError;
use crate::inventory::{self, Entry, Registry};
use crate::output::{self, NodeReply};
use crate::session::Session;
use crate::target::Plan;

/// The age limit of a new bucket unless given: an entry not rewritten for this long is
/// dropped, the node forgotten.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `mco registry init`: makes the bucket (an inventory admin's right).
pub(super) async fn init(
    cfg: &ClientConfig,
    max_age: Duration,
    replicas: usize,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let session = Session::connect(cfg, crate::session::Warnings::Stderr).await?;
    let js = async_nats::jetstream::new(session.bus().client.clone());
    let bucket = cfg.inventory.bucket.clone();
    let crl_bucket = cfg.inventory.crl_bucket.clone();
    let made = async {
        create_bucket(
            &js,
            &bucket,
            "mco inventory registry: one signed entry per node",
            max_age,
            mco_core::inventory::MAX_ENTRY + 4096,
            replicas,
        )
        .await?;
        // The CA's CRL: kept until replaced, whatever the entries' age limit.
        create_bucket(
            &js,
            &crl_bucket,
            "mco: the collective CA's CRL, watched by every responder",
            Duration::ZERO,
            mco_core::inventory::MAX_CRL + 4096,
            replicas,
        )
        .await
    }
    .await;
    session.close();
    made?;
    writeln!(
        out,
        "Inventory registry {bucket} ready: entries older than {} are dropped, {replicas} replica(s); CRLs are published in {crl_bucket}",
        humantime(max_age)
    )
    .map_err(io)?;
    Ok(0)
}

/// Makes a key-value bucket's stream as `create_key_value` would, without the account-info
/// request whose answer from a 2.9 server the library cannot read.
async fn create_bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    max_value: usize,
    replicas: usize,
) -> Result<(), ClientError> {
    use async_nats::jetstream::stream;
    js.create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: i32::try_from(max_value).unwrap_or(i32::MAX),
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| ClientError::Bus {
        what: format!(
            "creating the bucket {bucket} (is this user an inventory admin? see \
             `mco pki broker-config --inventory-admin`)"
        ),
        source: e.to_string().into(),
    })
}

/// `mco pki revoke|crl --publish`: puts the CA's CRL where every responder watching it finds
/// it.
pub(super) async fn publish_crl(
    cfg: &ClientConfig,
    crl: &std::path::Path,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let bytes = std::fs::read(crl).map_err(|e| ClientError::file(crl.display().to_string(), e))?;
    if bytes.len() > mco_core::inventory::MAX_CRL {
        return Err(ClientError::Io(format!(
            "{}: over {} bytes, too large to publish",
            crl.display(),
            mco_core::inventory::MAX_CRL
        )));
    }
    let session = Session::connect(cfg, crate::session::Warnings::Stderr).await?;
    let js = async_nats::jetstream::new(session.bus().client.clone());
    let bucket = cfg.inventory.crl_bucket.clone();
    let put = async {
        let store = js
            .get_key_value(bucket.as_str())
            .await
            .map_err(|e| e.to_string())?;
        store
            .put(mco_core::inventory::CRL_KEY, bytes.into())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    session.close();
    let revision = put.map_err(|e| ClientError::Bus {
        what: format!(
            "publishing the CRL in bucket {bucket} (made by `mco registry init`; an inventory \
             admin's right)"
        ),
        source: e.into(),
    })?;
    writeln!(
        out,
        "Published {} in {bucket} (revision {revision})",
        crl.display()
    )
    .map_err(io)?;
    Ok(0)
}

/// Reads the registry and keeps the entries the plan's filter selects.
async fn selected(
    session: &Session,
    plan: &Plan,
    bucket: &str,
) -> Result<(Registry, Vec<String>), ClientError> {
    let registry = inventory::read(
        session.bus(),
        bucket,
        plan.discovery_timeout
            .max(crate::discovery::INVENTORY_READ_MIN),
    )
    .await?;
    let ids = inventory::select(&registry, &plan.filter, &plan.collective)?
        .into_iter()
        .map(|e| e.body.identity.clone())
        .collect();
    for w in &registry.warnings {
        eprintln!("mco: {w}");
    }
    Ok((registry, ids))
}

fn entry<'a>(registry: &'a Registry, id: &str) -> Option<&'a Entry> {
    registry.entries.iter().find(|e| e.body.identity == id)
}

/// `mco find --stale AGE`: the selected nodes whose entry is older than `age`, with when they
/// last registered.
pub(super) async fn stale(
    cfg: &ClientConfig,
    args: &crate::cli::TargetArgs,
    age: Duration,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, session) = Session::open(cfg, args).await?;
    let result = selected(&session, &plan, &cfg.inventory.bucket).await;
    session.close();
    let (registry, ids) = result?;
    let now = now_ms();
    let limit = age.as_millis() as u64;
    let mut listed = 0;
    for id in &ids {
        let Some(e) = entry(&registry, id) else {
            continue;
        };
        let a = e.age_ms(now);
        if a > limit {
            listed += 1;
            writeln!(
                out,
                "{id:<40} last registered {} ago",
                humantime(Duration::from_millis(a))
            )
            .map_err(io)?;
        }
    }
    Ok(if listed == 0 { 1 } else { 0 })
}

/// `mco facts FACT --from-registry`.
pub(super) async fn facts(
    cfg: &ClientConfig,
    fact: &str,
    verbose: bool,
    args: &crate::cli::TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, session) = Session::open(cfg, args).await?;
    let result = selected(&session, &plan, &cfg.inventory.bucket).await;
    session.close();
    let (registry, ids) = result?;
    let replies: Vec<NodeReply> = ids
        .iter()
        .filter_map(|id| entry(&registry, id))
        .map(|e| {
            let value = mco_core::facts::lookup(&e.body.facts, fact)
                .cloned()
                .unwrap_or(Value::Null);
            let mut data = Map::new();
            data.insert("fact".into(), json!(fact));
            data.insert("value".into(), value);
            NodeReply {
                sender: e.body.identity.clone(),
                status: mco_core::Status::Ok,
                message: "OK".into(),
                data,
                rtt: Duration::ZERO,
            }
        })
        .collect();
    output::write_fact_report(out, fact, &replies, verbose).map_err(io)?;
    writeln!(
        out,
        "\nFrom the inventory registry: {} node(s)",
        replies.len()
    )
    .map_err(io)?;
    Ok(if replies.is_empty() { 1 } else { 0 })
}

/// What `mco inventory NODE --from-registry` shows: the node's entry, shaped as
/// `rpcutil inventory`'s answer, with its age.
pub(super) async fn node(
    cfg: &ClientConfig,
    node: &str,
    args: &crate::cli::TargetArgs,
) -> Result<Option<Map<String, Value>>, ClientError> {
    let (plan, session) = Session::open(cfg, args).await?;
    let result = inventory::read(
        session.bus(),
        &cfg.inventory.bucket,
        plan.discovery_timeout
            .max(crate::discovery::INVENTORY_READ_MIN),
    )
    .await;
    session.close();
    let registry = result?;
    for w in &registry.warnings {
        eprintln!("mco: {w}");
    }
    Ok(entry(&registry, node).map(|e| {
        let b = &e.body;
        let mut d = Map::new();
        d.insert("agents".into(), json!(b.agents));
        d.insert("facts".into(), Value::Object(b.facts.clone()));
        d.insert("classes".into(), json!(b.classes));
        d.insert("collectives".into(), json!(b.collectives));
        d.insert("main_collective".into(), json!(b.collectives.first()));
        d.insert("version".into(), json!(b.version));
        d.insert(
            "registered".into(),
            json!(format!(
                "{} ago",
                humantime(Duration::from_millis(e.age_ms(now_ms())))
            )),
        );
        if let Some(crl) = &b.crl {
            d.insert("crl".into(), json!(crl));
        }
        d
    }))
}

/// `90s` → `1m30s`.
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(humantime(Duration::from_secs(5)), "5s");
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(7200 + 60)), "2h01m");
        assert_eq!(humantime(Duration::from_secs(3 * 86_400)), "3d00h");
    }
}
