//! Nagios performance data: parsing what nodes report and aggregating it
//! across the fleet.
//!
//! The format is `'label'=value[UOM];[warn];[crit];[min];[max]`, items
//! separated by spaces; a label with spaces is single-quoted (`''` is a
//! quote inside it). Only the label, the number and its unit matter here:
//! the aggregate is each label's minimum, average and maximum over the nodes
//! that report it, with the unit kept.
//!
//! A node chooses every byte of its perfdata, and the aggregate goes on
//! `check_mco_nrpe`'s status line, where a newline would end the line and a
//! `|` or `=` would start forged performance data. So an item is accepted
//! only when its label is letters, digits, spaces and ASCII punctuation
//! other than `|` and `=` (at most [`MAX_LABEL_CHARS`]) and its unit is
//! letters, `%`, `/` or `°` (at most [`MAX_UNIT_CHARS`]); any other item is
//! refused and counted ([`Parsed::refused`]), so the report can say so.
//! At most [`MAX_LABELS`] labels are aggregated.

use std::collections::{HashMap, HashSet};

/// The longest label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// The longest unit accepted, in characters.
pub const MAX_UNIT_CHARS: usize = 10;

/// How many distinct labels are aggregated; later ones are left out.
pub const MAX_LABELS: usize = 64;

/// Whether a label can be written on a status line without changing its
/// meaning.
pub fn safe_label(l: &str) -> bool {
    !l.is_empty()
        && l.chars().count() <= MAX_LABEL_CHARS
        && l.chars().all(|c| {
            c.is_alphanumeric() || c == ' ' || (c.is_ascii_punctuation() && c != '|' && c != '=')
        })
}

/// Whether a unit can be written on a status line without changing its
/// meaning.
pub fn safe_unit(u: &str) -> bool {
    u.chars().count() <= MAX_UNIT_CHARS
        && u.chars()
            .all(|c| c.is_alphabetic() || matches!(c, '%' | '/' | '°'))
}

/// A perfdata string, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The items accepted.
    pub items: Vec<Perfdatum>,
    /// How many items were refused for an unsafe label or unit.
    pub refused: usize,
}

/// One performance data item.
#[derive(Debug, Clone, PartialEq)]
pub struct Perfdatum {
    /// The label, unquoted.
    pub label: String,
    /// The value.
    pub value: f64,
    /// The unit of measure (`s`, `%`, `KB`, `c`, …), possibly empty.
    pub unit: String,
}

/// Parses a perfdata string; items that are malformed or whose value is not a
/// number (`U`) are skipped, items with an unsafe label or unit refused.
pub fn parse(text: &str) -> Vec<Perfdatum> {
    parse_checked(text).items
}

/// [`parse`], counting the items refused for an unsafe label or unit.
pub fn parse_checked(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            match quoted_label(quoted) {
                Some(x) => x,
                None => {
                    // An unterminated quote: what follows is unreadable.
                    out.refused += 1;
                    return out;
                }
            }
        } else {
            let end = rest
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        let Some(after) = after.strip_prefix('=') else {
            // Not an item: skip to the next space.
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            rest = &after[end..];
            continue;
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (item, tail) = after.split_at(end);
        rest = tail;
        if let Some((value, unit)) = value_and_unit(item.split(';').next().unwrap_or("")) {
            if safe_label(&label) && safe_unit(&unit) {
                out.items.push(Perfdatum { label, value, unit });
            } else {
                out.refused += 1;
            }
        }
    }
}

/// The label of a quoted item and what follows its closing quote.
fn quoted_label(s: &str) -> Option<(String, &str)> {
    let mut label = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if s[i + 1..].starts_with('\'') {
                label.push('\'');
                chars.next();
            } else {
                return Some((label, &s[i + 1..]));
            }
        } else {
            label.push(c);
        }
    }
    None
}

/// `12.5ms` → (12.5, "ms"); a comma works as the decimal point.
fn value_and_unit(s: &str) -> Option<(f64, String)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '+')))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let value: f64 = num.replace(',', ".").parse().ok()?;
    value.is_finite().then(|| (value, unit.to_string()))
}

/// One label's statistics across nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// The label.
    pub label: String,
    /// The unit every counted value had.
    pub unit: String,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of values.
    pub sum: f64,
    /// How many values.
    pub count: usize,
}

impl Stat {
    /// The mean.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Aggregates the perfdata strings of many nodes, labels in order of first
/// appearance. A value whose unit differs from the label's first is left out
/// (adding seconds to percentages means nothing); a label a node repeats
/// counts each time.
pub fn aggregate<'a>(per_node: impl IntoIterator<Item = &'a str>) -> Vec<Stat> {
    aggregate_counted(per_node).stats
}

/// An aggregate and what it left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    /// Each label's statistics, at most [`MAX_LABELS`].
    pub stats: Vec<Stat>,
    /// Labels left out beyond [`MAX_LABELS`].
    pub labels_left_out: usize,
}

/// [`aggregate`], saying how many labels were left out beyond [`MAX_LABELS`].
pub fn aggregate_counted<'a>(per_node: impl IntoIterator<Item = &'a str>) -> Aggregate {
    let mut stats: Vec<Stat> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut left_out: HashSet<String> = HashSet::new();
    for text in per_node {
        for p in parse(text) {
            if !index.contains_key(&p.label) && stats.len() >= MAX_LABELS {
                left_out.insert(p.label);
                continue;
            }
            match index.get(&p.label) {
                Some(&i) => {
                    let s = &mut stats[i];
                    if s.unit == p.unit {
                        s.min = s.min.min(p.value);
                        s.max = s.max.max(p.value);
                        s.sum += p.value;
                        s.count += 1;
                    }
                }
                None => {
                    index.insert(p.label.clone(), stats.len());
                    stats.push(Stat {
                        label: p.label,
                        unit: p.unit,
                        min: p.value,
                        max: p.value,
                        sum: p.value,
                        count: 1,
                    });
                }
            }
        }
    }
    Aggregate {
        stats,
        labels_left_out: left_out.len(),
    }
}

/// A number as perfdata prints it: up to six decimals, no trailing zeros.
pub fn number(x: f64) -> String {
    let fixed = format!("{x:.6}");
    let t = fixed.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.into()
    }
}

/// A label as perfdata writes it: quoted when it holds anything but
/// letters, digits and `_-./:`, with quotes doubled.
pub fn label(l: &str) -> String {
    if !l.is_empty()
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
    {
        l.to_string()
    } else {
        format!("'{}'", l.replace('\'', "''"))
    }
}

/// The `label_min`, `label_avg` and `label_max` items of each statistic.
pub fn render(stats: &[Stat]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stats {
        for (suffix, v) in [("min", s.min), ("avg", s.avg()), ("max", s.max)] {
            out.push(format!(
                "{}={}{};;;;",
                label(&format!("{}_{suffix}", s.label)),
                number(v),
                s.unit
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, value: f64, unit: &str) -> Perfdatum {
        Perfdatum {
            label: label.into(),
            value,
            unit: unit.into(),
        }
    }

    #[test]
    fn parses_labels_units_and_skips_junk() {
        assert_eq!(
            parse("load1=0.100;5.000;10.000;0; load5=0.2;;;; 'free space'=45%;20;10 /=2643MB;5948;5958;0;5968"),
            vec![
                p("load1", 0.1, ""),
                p("load5", 0.2, ""),
                p("free space", 45.0, "%"),
                p("/", 2643.0, "MB"),
            ]
        );
        assert_eq!(
            parse("'it''s'=1s x=U;1;2 junk y=-2,5KB 'unterminated=3"),
            vec![p("it's", 1.0, "s"), p("y", -2.5, "KB")]
        );
        assert_eq!(
            parse("time=0.5s c=12c b=1024B"),
            vec![p("time", 0.5, "s"), p("c", 12.0, "c"), p("b", 1024.0, "B")]
        );
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn aggregates_min_avg_max_per_label() {
        let stats = aggregate([
            "load1=0.1;5;10 t=2s",
            "load1=3.1 t=4s 'a b'=1%",
            "t=50% load1=0.36",
        ]);
        assert_eq!(
            render(&stats),
            vec![
                "load1_min=0.1;;;;",
                "load1_avg=1.186667;;;;",
                "load1_max=3.1;;;;",
                "t_min=2s;;;;",
                "t_avg=3s;;;;",
                "t_max=4s;;;;",
                "'a b_min'=1%;;;;",
                "'a b_avg'=1%;;;;",
                "'a b_max'=1%;;;;",
            ]
        );
    }

    /// The review's attack: a node's label with a newline and a unit with a `|` used to split
    /// the status line and add perfdata items. Such items are refused and counted; the rest of
    /// the node's perfdata still counts.
    #[test]
    fn a_nodes_perfdata_cannot_break_the_status_line() {
        let evil = "'x\n[OK] db-01: all good'=1 y=2|forged z=3|w=9 'a|b'=4 'e\u{1b}[2J'=5 \
                    'r\u{202e}l'=6 'ok label'=7°C";
        let parsed = parse_checked(evil);
        assert_eq!(parsed.items, vec![p("ok label", 7.0, "°C")]);
        assert_eq!(parsed.refused, 6);
        let line = render(&aggregate([evil, "load=0.5"])).join(" ");
        assert!(!line.contains(['\n', '|', '\u{1b}', '\u{202e}']), "{line}");
        assert_eq!(
            line,
            "'ok label_min'=7°C;;;; 'ok label_avg'=7°C;;;; 'ok label_max'=7°C;;;; \
             load_min=0.5;;;; load_avg=0.5;;;; load_max=0.5;;;;"
        );
        assert_eq!(parse_checked("'unterminated=3").refused, 1);
        assert!(!safe_label(&"x".repeat(MAX_LABEL_CHARS + 1)));
        assert!(safe_label("Température (x) it's/1.5:a_b-c"));
        assert!(!safe_unit("msmsmsmsmsm"));
    }

    #[test]
    fn labels_beyond_the_limit_are_left_out_and_counted() {
        let many: String = (0..MAX_LABELS + 5).map(|i| format!("l{i}=1 ")).collect();
        let a = aggregate_counted([many.as_str(), "l0=3 l65=1"]);
        assert_eq!(a.stats.len(), MAX_LABELS);
        assert_eq!(a.labels_left_out, 5);
        assert_eq!(a.stats[0].count, 2);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,120}") {
            for item in parse(&text) {
                proptest::prop_assert!(item.value.is_finite());
            }
        }

        /// Whatever a node sends, the rendered aggregate is one line with no `|`.
        #[test]
        fn rendered_perfdata_stays_on_the_status_line(a in "\\PC{0,80}", b in ".{0,80}") {
            let line = render(&aggregate([a.as_str(), b.as_str()])).join(" ");
            proptest::prop_assert!(!line.contains(|c: char| c == '|' || c.is_control()), "{:?}", line);
        }
    }
}
