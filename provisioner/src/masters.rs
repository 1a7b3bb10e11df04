//! Choosing a master for a node: among the masters discovered now, those
//! that share the node's value of the first criterion fact that any master
//! shares (e.g. `datacenter`, then `region`, then `country`); the least
//! loaded of them; any master when none shares a criterion.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A master as discovery found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Master {
    /// Its identity.
    pub identity: String,
    /// Its facts.
    pub facts: Map<String, Value>,
    /// The agents it hosts (a master hosting `ca` gets old certificates cleaned).
    pub agents: Vec<String>,
}

/// Why a master was chosen, for the log and the notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It shares this criterion fact's value with the node.
    Shares(String),
    /// No master shares a criterion: any master.
    Fallback,
}

/// Picks masters, spreading the nodes of one run: a master's effective load
/// is its load fact plus `per_node` for every node this picker has already
/// given it.
#[derive(Debug, Clone)]
pub struct Picker {
    criteria: Vec<String>,
    load_fact: String,
    per_node: f64,
    given: HashMap<String, usize>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Picker {
    /// A picker matching on `criteria` in order, reading load from `load_fact`.
    pub fn new(criteria: Vec<String>, load_fact: String, per_node: f64) -> Picker {
        Picker {
            criteria,
            load_fact,
            per_node,
            given: HashMap::new(),
        }
    }

    fn load(&self, m: &Master) -> f64 {
        let base = m
            .facts
            .get(&self.load_fact)
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(f64::MAX / 4.0);
        base + self.per_node * *self.given.get(&m.identity).unwrap_or(&0) as f64
    }

    /// The master for a node with `facts`, and why; `None` when there are no masters.
    pub fn pick<'a>(
        &mut self,
        facts: &Map<String, Value>,
        masters: &'a [Master],
    ) -> Option<(&'a Master, Reason)> {
        let mut chosen: Vec<&Master> = Vec::new();
        let mut reason = Reason::Fallback;
        for c in &self.criteria {
            let Some(want) = mco_core::facts::lookup(facts, c).and_then(text) else {
                continue;
            };
            chosen = masters
                .iter()
                .filter(|m| {
                    mco_core::facts::lookup(&m.facts, c)
                        .and_then(text)
                        .as_deref()
                        == Some(&want)
                })
                .collect();
            if !chosen.is_empty() {
                reason = Reason::Shares(c.clone());
                break;
            }
        }
        if chosen.is_empty() {
            chosen = masters.iter().collect();
        }
        let best = chosen.into_iter().min_by(|a, b| {
            self.load(a)
                .total_cmp(&self.load(b))
                .then_with(|| a.identity.cmp(&b.identity))
        })?;
        *self.given.entry(best.identity.clone()).or_default() += 1;
        Some((best, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(id: &str, facts: Value) -> Master {
        Master {
            identity: id.into(),
            facts: facts.as_object().cloned().unwrap(),
            agents: Vec::new(),
        }
    }

    fn masters() -> Vec<Master> {
        vec![
            m(
                "m-eu-fr-1",
                json!({"region": "eu", "country": "fr", "load": 0.9}),
            ),
            m(
                "m-eu-fr-2",
                json!({"region": "eu", "country": "fr", "load": 0.2}),
            ),
            m(
                "m-eu-de-1",
                json!({"region": "eu", "country": "de", "load": 0.1}),
            ),
            m(
                "m-us-1",
                json!({"region": "us", "country": "us", "load": "0.5"}),
            ),
        ]
    }

    fn picker() -> Picker {
        Picker::new(vec!["country".into(), "region".into()], "load".into(), 0.0)
    }

    fn node(facts: Value) -> Map<String, Value> {
        facts.as_object().cloned().unwrap()
    }

    #[test]
    fn first_shared_criterion_then_least_loaded() {
        let ms = masters();
        let mut p = picker();
        let (best, why) = p
            .pick(&node(json!({"region": "eu", "country": "fr"})), &ms)
            .unwrap();
        assert_eq!(
            (best.identity.as_str(), why),
            ("m-eu-fr-2", Reason::Shares("country".into()))
        );
        // No master in Italy: the region decides.
        let (best, why) = p
            .pick(&node(json!({"region": "eu", "country": "it"})), &ms)
            .unwrap();
        assert_eq!(
            (best.identity.as_str(), why),
            ("m-eu-de-1", Reason::Shares("region".into()))
        );
        // Nothing shared: the least loaded of all.
        let (best, why) = p
            .pick(&node(json!({"region": "ap", "country": "jp"})), &ms)
            .unwrap();
        assert_eq!(
            (best.identity.as_str(), why),
            ("m-eu-de-1", Reason::Fallback)
        );
        // A node without the facts: any master.
        assert_eq!(p.pick(&node(json!({})), &ms).unwrap().1, Reason::Fallback);
        assert!(p.pick(&node(json!({})), &[]).is_none());
    }

    #[test]
    fn nodes_of_one_run_are_spread() {
        let ms = vec![
            m("a", json!({"region": "eu", "load": 1.0})),
            m("b", json!({"region": "eu", "load": 1.0})),
        ];
        let mut p = Picker::new(vec!["region".into()], "load".into(), 0.01);
        let mut count = HashMap::new();
        for _ in 0..10 {
            let (best, _) = p.pick(&node(json!({"region": "eu"})), &ms).unwrap();
            *count.entry(best.identity.clone()).or_insert(0) += 1;
        }
        assert_eq!(count["a"], 5);
        assert_eq!(count["b"], 5);
    }
}
