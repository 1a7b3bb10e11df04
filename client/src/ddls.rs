//! The DDLs the client knows: the built-in ones, then the configured directories.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mco_core::Ddl;

use crate::error::ClientError;

/// DDLs shipped with mco, embedded at build time.
pub const BUILTIN: &[(&str, &str)] = &[
    ("rpcutil", include_str!("../../ddl/rpcutil.json")),
    ("resource", include_str!("../../ddl/resource.json")),
    ("nrpe", include_str!("../../ddl/nrpe.json")),
    ("provision", include_str!("../../ddl/provision.json")),
    ("ca", include_str!("../../ddl/ca.json")),
];

/// Known DDLs by agent name.
#[derive(Debug, Default)]
pub struct DdlStore {
    ddls: BTreeMap<String, Ddl>,
}

impl DdlStore {
    /// Loads the built-in DDLs, then every `*.json` in `dirs` (later ones replace earlier).
    pub fn load(dirs: &[PathBuf]) -> Result<DdlStore, ClientError> {
        let mut ddls = BTreeMap::new();
        for (name, text) in BUILTIN {
            let ddl = Ddl::from_json(&format!("ddl/{name}.json"), text)?;
            ddls.insert(ddl.metadata.name.clone(), ddl);
        }
        for dir in dirs {
            if !dir.is_dir() {
                return Err(ClientError::Usage(format!(
                    "ddl_dirs: {} is not a directory",
                    dir.display()
                )));
            }
            for ddl in Ddl::load_dir(dir)? {
                ddls.insert(ddl.metadata.name.clone(), ddl);
            }
        }
        Ok(DdlStore { ddls })
    }

    /// The DDL of `agent`.
    pub fn get(&self, agent: &str) -> Option<&Ddl> {
        self.ddls.get(agent)
    }

    /// Every known DDL, by name.
    pub fn all(&self) -> impl Iterator<Item = &Ddl> {
        self.ddls.values()
    }
}
