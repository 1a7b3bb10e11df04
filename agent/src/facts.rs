//! Fact gathering (interim: files are merged by the full module).

use mco_core::config::FactsConfig;
use mco_core::facts::FactMap;

/// The result of one gathering pass.
pub struct Gathered {
    /// Facts.
    pub facts: FactMap,
    /// Classes.
    pub classes: Vec<String>,
    /// Problems met.
    pub warnings: Vec<String>,
}

/// Gathers facts.
pub async fn gather(_cfg: &FactsConfig) -> Gathered {
    Gathered {
        facts: FactMap::new(),
        classes: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The host name.
pub fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
