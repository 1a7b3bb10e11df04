//! Resource types: each knows its properties and how to find, list and
//! change resources of its kind under a [`System`].

use serde_json::Value;

use crate::model::{absent, ensure_of, same, Change, Failure, Property, State};
use crate::system::System;

#[cfg(test)]
mod adversarial_tests;
mod cron;
mod exec;
mod file;
mod group;
mod host;
mod mailalias;
mod package;
#[cfg(test)]
mod secret_tests;
mod service;
mod ssh_authorized_key;
mod user;

/// One resource type (`user`, `file`, …) and its provider.
///
/// Providers are synchronous: the agent runs them on a blocking thread, one
/// change at a time per lock scope ([`ResourceType::lock_scope`]), so they
/// may read files and run commands freely. Every file they touch under the
/// root goes through [`System::fs`] ([`crate::beneath`]): never through a
/// symbolic link, only regular files read, files replaced whole.
pub trait ResourceType: Send + Sync {
    /// The type's name.
    fn name(&self) -> &'static str;

    /// Which lock a `do` of this type holds: changes in one scope are made
    /// one at a time. The default, `system`, is shared by every type that
    /// edits the node's own files; a type that works in users' homes has
    /// its own.
    fn lock_scope(&self) -> &'static str {
        "system"
    }

    /// Every property the type accepts besides `name`.
    fn properties(&self) -> &'static [Property];

    /// Checks a resource name and the normalised desired values together
    /// (e.g. that a password is a hash, that a link has a target).
    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        let _ = (name, desired);
        Ok(())
    }

    /// The current state of `name`; `ensure: absent` when it does not exist.
    fn find(&self, sys: &System, name: &str) -> Result<State, Failure>;

    /// Every resource of this type on the node, each with a `name`.
    fn search(&self, sys: &System) -> Result<Vec<State>, Failure>;

    /// The current state that `do` compares `desired` with. The default is
    /// [`ResourceType::find`]; a type whose "current state" depends on the
    /// request overrides it: an exec evaluates its `creates`, `onlyif` and
    /// `unless` here, a file resolves a numeric owner given in `desired`
    /// against the node's user database. It may also refuse a request that
    /// only the node can judge (an owner that does not exist there).
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let _ = desired;
        self.find(sys, name)
    }

    /// What must change to turn `current` into `desired`. The default
    /// compares each desired state property with the current one (see
    /// [`default_changes`]).
    fn changes(&self, name: &str, desired: &State, current: &State) -> Vec<Change> {
        let _ = name;
        default_changes(self.properties(), desired, current)
    }

    /// Makes the changes (never called with none, nor in noop mode).
    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<(), Failure>;

    /// Makes the changes like [`ResourceType::apply`] and returns facts
    /// about the run that `find` cannot show afterwards (an exec's
    /// `exitcode` and `output`); `do` adds them to the `resource` it
    /// replies with. The default applies and adds nothing.
    fn apply_report(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<State, Failure> {
        self.apply(sys, name, desired, current, changes)?;
        Ok(State::new())
    }
}

/// The comparison most types want:
/// - `ensure: absent` wanted and the resource is absent: nothing to do;
/// - `ensure: absent` wanted and it exists: one change, of `ensure`;
/// - it is absent and something else is wanted: `ensure` changes, and every
///   other desired property is listed as set from nothing;
/// - otherwise each desired property that differs (per [`same`]).
///
/// Parameters (see [`Property::parameter`]) are never compared.
pub fn default_changes(props: &[Property], desired: &State, current: &State) -> Vec<Change> {
    let have = ensure_of(current);
    let want = desired.get("ensure").and_then(Value::as_str);
    if want == Some("absent") {
        return if have == "absent" {
            Vec::new()
        } else {
            vec![Change::new(
                "ensure",
                current["ensure"].clone(),
                "absent".into(),
            )]
        };
    }
    let mut out = Vec::new();
    let creating = have == "absent";
    if creating {
        let new = want.unwrap_or("present");
        out.push(Change::new("ensure", "absent".into(), new.into()));
    }
    for p in props {
        if p.parameter || p.name == "ensure" {
            continue;
        }
        let Some(w) = desired.get(p.name) else {
            continue;
        };
        let h = if creating {
            &Value::Null
        } else {
            current.get(p.name).unwrap_or(&Value::Null)
        };
        if creating || !same(p.kind, w, h) {
            out.push(Change::new(p.name, h.clone(), w.clone()));
        }
    }
    if !creating {
        if let Some(w) = want {
            if w != have && !out.iter().any(|c| c.property == "ensure") {
                out.insert(0, Change::new("ensure", have.into(), w.into()));
            }
        }
    }
    out
}

/// A state for a resource that does not exist.
pub fn missing(name: &str) -> State {
    let mut s = absent();
    s.insert("name".into(), name.into());
    s
}

/// Every type this build has.
pub fn all() -> Vec<Box<dyn ResourceType>> {
    vec![
        Box::new(host::Host),
        Box::new(package::Package),
        Box::new(service::Service),
        Box::new(mailalias::Mailalias),
        Box::new(file::File),
        Box::new(exec::Exec),
        Box::new(user::User),
        Box::new(group::Group),
        Box::new(ssh_authorized_key::SshAuthorizedKey),
        Box::new(cron::Cron),
    ]
}

/// The names of every type this build has.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|t| t.name()).collect()
}

/// A temporary system root and an agent managing one type on it, for the
/// types' tests.
#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use mco_core::agent::ActionError;
    use serde_json::{Map, Value};

    use crate::{to_error, ResourceAgent};

    /// A temporary root with the agent allowed to manage one type.
    pub struct Fixture {
        pub dir: tempfile::TempDir,
        pub agent: ResourceAgent,
        pub ty: &'static str,
    }

    impl Fixture {
        /// Manages `ty` under a new temporary root.
        pub fn new(ty: &'static str) -> Fixture {
            Fixture::with(ty, "")
        }

        /// Same, with more `[plugin.resource]` settings (TOML).
        pub fn with(ty: &'static str, extra: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let toml = format!(
                "allow_types = [{ty:?}]\nroot = {:?}\n{extra}",
                dir.path().display().to_string()
            );
            let agent =
                ResourceAgent::from_config(&toml.parse().unwrap(), Path::new("responder.toml"))
                    .unwrap();
            Fixture { dir, agent, ty }
        }

        /// The root directory.
        #[allow(dead_code)]
        pub fn root(&self) -> &Path {
            self.dir.path()
        }

        /// Writes a system file (path as on the node) under the root.
        pub fn file(self, abs: &str, content: &str) -> Fixture {
            let p = self.agent.inner.system.path(abs);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            self
        }

        /// Reads a system file under the root.
        pub fn read(&self, abs: &str) -> String {
            std::fs::read_to_string(self.agent.inner.system.path(abs)).unwrap()
        }

        fn input(&self, name: Option<&str>, props: &[(&str, &str)]) -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("type".into(), self.ty.into());
            if let Some(n) = name {
                m.insert("name".into(), n.into());
            }
            for (k, v) in props {
                let v: Value = match *k {
                    "noop" => Value::Bool(*v == "true"),
                    "limit" => Value::from(v.parse::<u64>().unwrap()),
                    _ => Value::String(v.to_string()),
                };
                m.insert(k.to_string(), v);
            }
            m
        }

        /// `do`, which must succeed.
        pub fn ensure(&self, name: &str, props: &[(&str, &str)]) -> Value {
            match self.agent.inner.ensure(&self.input(Some(name), props)) {
                Ok(o) => Value::Object(o),
                Err(e) => panic!("do {} {name}: {e}", self.ty),
            }
        }

        /// `do`, which must fail.
        pub fn ensure_err(&self, name: &str, props: &[(&str, &str)]) -> ActionError {
            match self.agent.inner.ensure(&self.input(Some(name), props)) {
                Ok(o) => panic!("do {} {name} succeeded: {o:?}", self.ty),
                Err(e) => to_error(e),
            }
        }

        /// `find`.
        pub fn find(&self, name: &str) -> Value {
            Value::Object(self.agent.inner.find(&self.input(Some(name), &[])).unwrap())
        }

        /// `search`.
        pub fn search(&self) -> Value {
            Value::Object(self.agent.inner.search(&self.input(None, &[])).unwrap())
        }
    }
}
