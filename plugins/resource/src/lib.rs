//! The `resource` agent: Puppet-RAL-style resources applied natively.
//!
//! `do` makes one resource match the properties given and reports exactly
//! what changed; `find` shows one resource; `search` lists every resource of
//! a type. Each type lives in its own module under [`types`] and works on a
//! [`System`] rooted at the configured `root`, so a temporary tree can stand
//! in for the node. Nothing is managed until the operator lists the type in
//! `allow_types` (see [`settings`]).

#![forbid(unsafe_code)]

pub mod beneath;
pub mod model;
pub mod settings;
pub mod system;
pub mod types;

use std::sync::{Arc, OnceLock};

use parking_lot::FairMutex;

use mco_core::agent::{outputs, ActionError, ActionResult, Agent, Outputs, RequestContext};
use mco_core::{Ddl, Status};
use serde_json::{json, Map, Value};

use crate::model::{ensure_of, normalise, Change, Failure, State, REDACTED};
use crate::settings::Settings;
use crate::system::System;

use crate::types::ResourceType;

/// The DDL shipped in `ddl/resource.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/resource.json");

/// Inputs of `do` that are not properties of the type.
const CONTROL: &[&str] = &["type", "name", "noop"];

/// The resource agent.
pub struct ResourceAgent {
    ddl: Ddl,
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    system: System,
    types: Vec<Box<dyn ResourceType>>,
    /// One change at a time per lock scope (see
    /// [`ResourceType::lock_scope`]), in the order the changes arrive (a
    /// fair lock: a later request never overtakes one already waiting, so
    /// `ensure=present` then `ensure=absent` ends absent): providers read, edit and replace
    /// shared files (passwd, hosts, crontabs), and the edit of one must not
    /// be lost to another's. Types that read files local users control
    /// have a scope of their own, so a slow home directory (a hung network
    /// mount) cannot hold up every other change on the node; the reads
    /// themselves never block on what a user planted (see [`crate::beneath`]).
    changing: Vec<(&'static str, FairMutex<()>)>,
}

fn ddl() -> Ddl {
    static DDL: OnceLock<Ddl> = OnceLock::new();
    DDL.get_or_init(|| {
        Ddl::from_json("ddl/resource.json", DDL_JSON).expect("the shipped resource DDL loads")
    })
    .clone()
}

impl ResourceAgent {
    /// Builds the agent from its `[plugin.resource]` table in the responder
    /// config `file`; every bad or unknown key is reported at once.
    pub fn from_config(
        table: &toml::Table,
        file: &std::path::Path,
    ) -> Result<ResourceAgent, mco_core::config::ConfigErrors> {
        let settings = Settings::from_table(table, &types::names(), file)?;
        Ok(ResourceAgent::new(settings))
    }

    /// Builds the agent from settings.
    pub fn new(settings: Settings) -> ResourceAgent {
        let system = System::new(settings.root.clone(), settings.command_timeout);
        ResourceAgent {
            ddl: ddl(),
            inner: Arc::new(Inner {
                settings,
                system,
                changing: scopes(&types::all()),
                types: types::all(),
            }),
        }
    }
}

/// One lock per distinct scope of `types`.
fn scopes(types: &[Box<dyn ResourceType>]) -> Vec<(&'static str, FairMutex<()>)> {
    let mut out: Vec<(&'static str, FairMutex<()>)> = Vec::new();
    for t in types {
        if !out.iter().any(|(s, _)| *s == t.lock_scope()) {
            out.push((t.lock_scope(), FairMutex::new(())));
        }
    }
    out
}

fn to_error(f: Failure) -> ActionError {
    let status = match &f {
        Failure::Invalid { .. } => Status::InvalidData,
        Failure::Missing { .. } => Status::MissingData,
        Failure::Denied(_) | Failure::Failed(_) => Status::Aborted,
    };
    ActionError::new(status, f.to_string())
}

/// Replaces a sensitive value by [`REDACTED`]; having none (`null`, `""`,
/// an empty list) is shown as it is, since it carries no secret.
fn redact_value(v: &mut Value) {
    let empty = match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        *v = REDACTED.into();
    }
}

fn text<'a>(input: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

impl Inner {
    fn kind(&self, input: &Map<String, Value>) -> Result<&dyn ResourceType, Failure> {
        let name = text(input, "type").ok_or_else(|| Failure::missing("type", "is required"))?;
        let t = self
            .types
            .iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Failure::invalid(
                    "type",
                    format!(
                        "unknown type {name:?} (known: {})",
                        types::names().join(", ")
                    ),
                )
            })?;
        if !self.settings.allow_types.iter().any(|a| a == name) {
            return Err(Failure::Denied(format!(
                "type {name} is not managed on this node (plugin.resource.allow_types)"
            )));
        }
        Ok(t.as_ref())
    }

    fn name(&self, ty: &dyn ResourceType, input: &Map<String, Value>) -> Result<String, Failure> {
        let name = text(input, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Failure::missing("name", "is required"))?;
        if let Some(rules) = self.settings.names.get(ty.name()) {
            if let Some(why) = rules.refuse(name) {
                return Err(Failure::Denied(format!(
                    "{} {name:?} may not be managed on this node: it {why}",
                    ty.name()
                )));
            }
        }
        Ok(name.to_string())
    }

    fn desired(&self, ty: &dyn ResourceType, input: &Map<String, Value>) -> Result<State, Failure> {
        let mut desired = State::new();
        for (k, v) in input {
            if CONTROL.contains(&k.as_str()) {
                continue;
            }
            let prop = ty
                .properties()
                .iter()
                .find(|p| p.name == k)
                .ok_or_else(|| {
                    let names: Vec<&str> = ty.properties().iter().map(|p| p.name).collect();
                    Failure::invalid(
                        k,
                        format!(
                            "not a property of type {} (it has: {})",
                            ty.name(),
                            names.join(", ")
                        ),
                    )
                })?;
            desired.insert(k.clone(), normalise(prop, v)?);
        }
        Ok(desired)
    }

    fn redact(&self, ty: &dyn ResourceType, state: &mut State) {
        for p in ty.properties().iter().filter(|p| p.sensitive) {
            if let Some(v) = state.get_mut(p.name) {
                redact_value(v);
            }
        }
    }

    fn redact_change(&self, ty: &dyn ResourceType, c: &Change) -> Value {
        let mut v = c.to_json();
        if ty
            .properties()
            .iter()
            .any(|p| p.sensitive && p.name == c.property)
        {
            for side in ["old", "new"] {
                redact_value(&mut v[side]);
            }
        }
        v
    }

    fn ensure(&self, input: &Map<String, Value>) -> Result<Outputs, Failure> {
        let ty = self.kind(input)?;
        let name = self.name(ty, input)?;
        let desired = self.desired(ty, input)?;
        ty.validate(&name, &desired)?;
        let noop = self.settings.noop || input.get("noop").and_then(Value::as_bool) == Some(true);
        let scope = self
            .changing
            .iter()
            .find(|(s, _)| *s == ty.lock_scope())
            .map(|(_, m)| m)
            .ok_or_else(|| Failure::failed(format!("no lock for {}", ty.lock_scope())))?;
        let _one_at_a_time = scope.lock();
        let current = ty.current(&self.system, &name, &desired)?;
        let changes = ty.changes(&name, &desired, &current);
        let after = if changes.is_empty() || noop {
            current.clone()
        } else {
            let report = ty.apply_report(&self.system, &name, &desired, &current, &changes)?;
            let mut after = ty.find(&self.system, &name)?;
            after.extend(report);
            after
        };
        let mut resource = after;
        self.redact(ty, &mut resource);
        let listed: Vec<Value> = changes.iter().map(|c| self.redact_change(ty, c)).collect();
        let props: Vec<&str> = changes.iter().map(|c| c.property.as_str()).collect();
        let message = match (changes.is_empty(), noop) {
            (true, _) => format!("{}[{name}] is in the desired state", ty.name()),
            (false, true) => format!(
                "{}[{name}] would change {} (noop)",
                ty.name(),
                props.join(", ")
            ),
            (false, false) => format!("{}[{name}] changed {}", ty.name(), props.join(", ")),
        };
        let ensure = ensure_of(&resource).to_string();
        Ok(outputs(json!({
            "changed": !changes.is_empty() && !noop,
            "noop": noop,
            "changes": listed,
            "resource": resource,
            "ensure": ensure,
            "message": message,
        })))
    }

    fn find(&self, input: &Map<String, Value>) -> Result<Outputs, Failure> {
        let ty = self.kind(input)?;
        let name = self.name(ty, input)?;
        let mut state = ty.find(&self.system, &name)?;
        self.redact(ty, &mut state);
        let ensure = ensure_of(&state).to_string();
        Ok(outputs(json!({"resource": state, "ensure": ensure})))
    }

    fn search(&self, input: &Map<String, Value>) -> Result<Outputs, Failure> {
        let ty = self.kind(input)?;
        let limit = input
            .get("limit")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .unwrap_or(self.settings.search_limit)
            .min(self.settings.search_limit);
        let mut all = ty.search(&self.system)?;
        let rules = self.settings.names.get(ty.name());
        all.retain(|s| {
            let n = s.get("name").and_then(Value::as_str).unwrap_or_default();
            rules.is_none_or(|r| r.refuse(n).is_none())
        });
        let count = all.len();
        all.truncate(limit);
        for s in &mut all {
            self.redact(ty, s);
        }
        Ok(outputs(json!({
            "resources": all,
            "count": count,
            "truncated": count > limit,
        })))
    }
}

#[async_trait::async_trait]
impl Agent for ResourceAgent {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        _ctx: &RequestContext,
    ) -> ActionResult {
        let inner = self.inner.clone();
        let action = action.to_string();
        let input = input.clone();
        let work = tokio::task::spawn_blocking(move || match action.as_str() {
            "do" => inner.ensure(&input),
            "find" => inner.find(&input),
            "search" => inner.search(&input),
            other => Err(Failure::invalid(
                "action",
                format!("unknown action {other}"),
            )),
        });
        match work.await {
            Ok(r) => r.map_err(to_error),
            Err(e) => Err(ActionError::new(
                Status::UnknownError,
                format!("the resource provider failed: {e}"),
            )),
        }
    }
}
