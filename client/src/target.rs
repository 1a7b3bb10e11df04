//! Resolving filter, discovery, limit and batch flags into a checked plan,
//! before anything touches the bus.

use std::path::PathBuf;
use std::time::Duration;

use mco_core::config::{parse_duration, ClientConfig};
use mco_core::filter::FactTerm;
use mco_core::Filter;

use crate::cli::{DiscoveryMethod, TargetArgs};
use crate::error::ClientError;

/// How many nodes `--limit-nodes` keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most N nodes.
    Count(usize),
    /// At most this percentage (rounded up, at least one node).
    Percent(f64),
}

impl Limit {
    /// Parses `N` or `N%`.
    pub fn parse(s: &str) -> Result<Limit, ClientError> {
        let bad = || {
            ClientError::Usage(format!(
                "--limit-nodes {s:?}: expected N or N% (like 10 or 25%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(bad());
            }
            Ok(Limit::Percent(v))
        } else {
            let n: usize = s.trim().parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            Ok(Limit::Count(n))
        }
    }

    /// How many of `total` nodes to keep.
    pub fn of(self, total: usize) -> usize {
        match self {
            Limit::Count(n) => n.min(total),
            Limit::Percent(p) => ((total as f64 * p / 100.0).ceil() as usize)
                .clamp(1, total.max(1))
                .min(total),
        }
    }
}

/// Where the node list comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Broadcast discovery on the bus.
    Broadcast,
    /// A file of identities.
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// Identities already read from a file or standard input, before
    /// connecting.
    Listed(Vec<String>),
    /// The nodes of the inventory registry that the filter selects (bucket named).
    Inventory(String),
}

/// A checked plan for one verb.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The filter (already compiled once to check it).
    pub filter: Filter,
    /// The collective addressed.
    pub collective: String,
    /// Where nodes come from.
    pub source: Source,
    /// Broadcast discovery timeout.
    pub discovery_timeout: Duration,
    /// Quiet window ending discovery early (zero: never).
    pub discovery_window: Duration,
    /// Reply timeout from `-t`.
    pub timeout: Option<Duration>,
    /// Batch size and pause.
    pub batch: Option<(usize, Duration)>,
    /// Node limit.
    pub limit: Option<Limit>,
    /// Seed for the limit's choice.
    pub limit_seed: Option<u64>,
    /// Show a progress bar (still only on a terminal).
    pub progress: bool,
    /// Re-sends to the silent nodes.
    pub retry: Option<crate::retry::Retry>,
}

/// Parses a duration flag (`2s`, `500ms`, `10m`); `None` when the flag was not given.
pub fn duration_arg(flag: &str, s: &Option<String>) -> Result<Option<Duration>, ClientError> {
    s.as_deref()
        .map(|v| parse_duration(v).map_err(|e| ClientError::Usage(format!("{flag}: {e}"))))
        .transpose()
}

/// Builds the filter from the flags, checking every part.
pub fn filter(args: &TargetArgs) -> Result<Filter, ClientError> {
    let mut f = Filter {
        identity: args.with_identity.clone(),
        class: args.with_class.clone(),
        agent: args.with_agent.clone(),
        compound: args.select.clone(),
        ..Default::default()
    };
    for fact in &args.with_fact {
        f.fact.push(FactTerm::parse(fact)?);
    }
    // MCollective splits each -W value on spaces: `-W "nginx country=fr"`.
    for w in args.with.iter().flat_map(|w| w.split_whitespace()) {
        f.add_with(w)?;
    }
    f.compile()?;
    Ok(f)
}

/// Resolves the flags against the config.
pub fn resolve(args: &TargetArgs, cfg: &ClientConfig) -> Result<Plan, ClientError> {
    let filter = filter(args)?;
    let collective = args
        .collective
        .clone()
        .unwrap_or_else(|| cfg.collective.clone());
    if !mco_core::subject::valid_token(&collective) {
        return Err(ClientError::Usage(format!(
            "-T {collective:?}: not a valid collective name"
        )));
    }
    let source = match (args.discovery_method, &args.nodes) {
        (Some(DiscoveryMethod::Stdin), None) => Source::Stdin,
        (Some(DiscoveryMethod::Stdin), Some(_)) => {
            return Err(ClientError::Usage(
                "--nodes and --discovery-method stdin exclude each other".into(),
            ))
        }
        (Some(DiscoveryMethod::Flatfile), None) => {
            return Err(ClientError::Usage(
                "--discovery-method flatfile needs --nodes FILE".into(),
            ))
        }
        (Some(DiscoveryMethod::Broadcast), Some(_)) => {
            return Err(ClientError::Usage(
                "--nodes and --discovery-method broadcast exclude each other".into(),
            ))
        }
        (Some(DiscoveryMethod::Inventory), Some(_)) => {
            return Err(ClientError::Usage(
                "--nodes and --discovery-method inventory exclude each other".into(),
            ))
        }
        (Some(DiscoveryMethod::Inventory), None) => Source::Inventory(cfg.inventory.bucket.clone()),
        (_, Some(file)) => Source::File(file.clone()),
        (None, None) if cfg.discover_from_inventory => {
            Source::Inventory(cfg.inventory.bucket.clone())
        }
        _ => Source::Broadcast,
    };
    let batch = match args.batch {
        Some(0) => return Err(ClientError::Usage("--batch must be at least 1".into())),
        Some(n) => Some((
            n,
            duration_arg("--batch-sleep", &args.batch_sleep)?.unwrap_or_default(),
        )),
        None => None,
    };
    Ok(Plan {
        filter,
        collective,
        source,
        discovery_timeout: duration_arg("--dt", &args.discovery_timeout)?
            .unwrap_or(cfg.discovery_timeout),
        discovery_window: duration_arg("--discovery-window", &args.discovery_window)?
            .unwrap_or(cfg.discovery_window),
        timeout: duration_arg("--timeout", &args.timeout)?,
        batch,
        limit: args.limit_nodes.as_deref().map(Limit::parse).transpose()?,
        limit_seed: args.limit_seed,
        progress: !args.no_progress,
        retry: match args.retry {
            None => None,
            Some(n) if n > crate::retry::MAX_RETRIES => {
                return Err(ClientError::Usage(format!(
                    "--retry {n}: at most {}",
                    crate::retry::MAX_RETRIES
                )))
            }
            Some(count) => Some(crate::retry::Retry {
                count,
                delay: duration_arg("--retry-delay", &args.retry_delay)?
                    .unwrap_or(crate::retry::DEFAULT_DELAY),
            }),
        },
    })
}

impl Plan {
    /// Reads a file or standard input of identities now (off the async
    /// workers), so that the plan names its nodes before the bus is
    /// connected; a missing file fails without any connection being made.
    pub async fn read_listed(mut self) -> Result<Plan, ClientError> {
        if !matches!(self.source, Source::File(_) | Source::Stdin) {
            return Ok(self);
        }
        tokio::task::spawn_blocking(move || {
            self.source = Source::Listed(match &self.source {
                Source::File(path) => crate::discovery::read_nodes_file(path)?,
                _ => crate::discovery::read_stdin()?,
            });
            Ok(self)
        })
        .await
        .map_err(|e| ClientError::Io(format!("reading the node list: {e}")))?
    }

    /// The nodes this plan names without asking the bus: a list read by
    /// [`read_listed`](Self::read_listed), or identities the filter spells
    /// out. Empty when discovery has to find them, or when `--limit-nodes`
    /// will pick among them.
    pub fn named_nodes(&self) -> Vec<String> {
        if self.limit.is_some() {
            return Vec::new();
        }
        match &self.source {
            Source::Listed(nodes) => nodes.clone(),
            Source::Broadcast => self.filter.literal_identities().unwrap_or_default(),
            Source::File(_) | Source::Stdin | Source::Inventory(_) => Vec::new(),
        }
    }
}

/// Applies `--limit-nodes`: a seeded shuffle, then the first N, in sorted order.
pub fn apply_limit(mut nodes: Vec<String>, limit: Option<Limit>, seed: Option<u64>) -> Vec<String> {
    let Some(limit) = limit else { return nodes };
    let keep = limit.of(nodes.len());
    nodes.sort();
    let mut state =
        seed.unwrap_or_else(|| mco_core::wire::now_ms() ^ u64::from(std::process::id()));
    // Fisher-Yates with splitmix64: the same seed picks the same nodes everywhere.
    for i in (1..nodes.len()).rev() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        nodes.swap(i, (z % (i as u64 + 1)) as usize);
    }
    nodes.truncate(keep);
    nodes.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(Limit::parse("3").unwrap().of(10), 3);
        assert_eq!(Limit::parse("25%").unwrap().of(10), 3);
        assert_eq!(Limit::parse("50%").unwrap().of(1), 1);
        assert_eq!(Limit::parse("20").unwrap().of(5), 5);
        for bad in ["0", "x", "0%", "101%", "-1"] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
        let nodes: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
        let a = apply_limit(nodes.clone(), Some(Limit::Count(5)), Some(7));
        let b = apply_limit(nodes.clone(), Some(Limit::Count(5)), Some(7));
        let c = apply_limit(nodes.clone(), Some(Limit::Count(5)), Some(8));
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        assert_ne!(a, c);
    }

    #[test]
    fn with_values_split_on_spaces() {
        let args = TargetArgs {
            with: vec!["nginx  country=fr".into(), "cpus<8".into()],
            ..Default::default()
        };
        let f = filter(&args).unwrap();
        assert_eq!(f.class, vec!["nginx"]);
        let facts: Vec<String> = f.fact.iter().map(ToString::to_string).collect();
        assert_eq!(facts, vec!["country==fr", "cpus<8"]);
    }

    #[test]
    fn bad_filters_fail_before_sending() {
        let args = TargetArgs {
            select: vec!["role=web and (".into()],
            ..Default::default()
        };
        match filter(&args) {
            Err(ClientError::Filter(e)) => assert_eq!(e.column, 15),
            other => panic!("{other:?}"),
        }
        let args = TargetArgs {
            with_fact: vec!["role".into()],
            ..Default::default()
        };
        assert!(filter(&args).is_err());
    }

    #[tokio::test]
    async fn listed_nodes_are_read_before_connecting() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("nodes.txt");
        std::fs::write(&file, "# web\nweb2\n\nweb1\nweb2\n").unwrap();
        let cfg = ClientConfig::defaults();
        let args = TargetArgs {
            nodes: Some(file),
            ..Default::default()
        };
        let plan = resolve(&args, &cfg).unwrap();
        assert!(plan.named_nodes().is_empty(), "not read yet");
        let mut plan = plan.read_listed().await.unwrap();
        assert_eq!(
            plan.source,
            Source::Listed(vec!["web1".into(), "web2".into()])
        );
        assert_eq!(plan.named_nodes(), ["web1", "web2"]);
        // --limit-nodes picks among them later: none are named up front.
        plan.limit = Some(Limit::Count(1));
        assert!(plan.named_nodes().is_empty());

        let missing = TargetArgs {
            nodes: Some(d.path().join("absent.txt")),
            ..Default::default()
        };
        let e = resolve(&missing, &cfg)
            .unwrap()
            .read_listed()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("absent.txt"), "{e}");

        let literal = TargetArgs {
            with_identity: vec!["web3".into()],
            ..Default::default()
        };
        assert_eq!(resolve(&literal, &cfg).unwrap().named_nodes(), ["web3"]);
        let pattern = TargetArgs {
            with_identity: vec!["/web/".into()],
            ..Default::default()
        };
        assert!(resolve(&pattern, &cfg).unwrap().named_nodes().is_empty());
    }
}
