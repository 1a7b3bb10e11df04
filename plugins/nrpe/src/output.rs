//! Splitting a plugin's output as the Nagios plugin API defines it.
//!
//! ```text
//! TEXT OUTPUT | OPTIONAL PERFDATA
//! LONG TEXT LINE 1
//! LONG TEXT LINE 2 | PERFDATA LINE 2
//! PERFDATA LINE 3
//! ```
//!
//! The first line is the service output; the text up to the next `|` is the
//! long output; performance data is what follows the `|` on the first line
//! plus everything after the second `|`, across lines. All of it is kept
//! (NRPE's older clients kept only the first line's).

/// A plugin's output, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginOutput {
    /// The first line, before any `|`, trimmed.
    pub output: String,
    /// The following lines up to the next `|`, trimmed.
    pub long_output: String,
    /// Every piece of performance data, joined with single spaces.
    pub perfdata: String,
}

/// Splits `text` per the plugin API.
pub fn split(text: &str) -> PluginOutput {
    let text = text.replace("\r\n", "\n");
    let (first, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let (output, perf1) = first.split_once('|').unwrap_or((first, ""));
    let (long, perf2) = rest.split_once('|').unwrap_or((rest, ""));
    let perfdata: Vec<&str> = perf1
        .split_whitespace()
        .chain(perf2.split_whitespace())
        .collect();
    PluginOutput {
        output: output.trim().to_string(),
        long_output: long.trim_matches(|c: char| c.is_whitespace()).to_string(),
        perfdata: perfdata.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        let o = split("OK - load average: 0.1, 0.2, 0.3|load1=0.100;5;10;0 load5=0.2;;;\n");
        assert_eq!(o.output, "OK - load average: 0.1, 0.2, 0.3");
        assert_eq!(o.long_output, "");
        assert_eq!(o.perfdata, "load1=0.100;5;10;0 load5=0.2;;;");
        assert_eq!(split("plain").output, "plain");
        assert_eq!(split(""), PluginOutput::default());
    }

    #[test]
    fn multi_line_with_perfdata_everywhere() {
        let o = split(
            "DISK OK - free space | /=2643MB;5948;5958;0;5968\n\
             / 15272 MB (77%);\n\
             /boot 68 MB (69%);\n\
             /home 69357 MB (27%); | /boot=68MB;88;93;0;98\n\
             /home=69357MB;253404;253409;0;253414\n",
        );
        assert_eq!(o.output, "DISK OK - free space");
        assert_eq!(
            o.long_output,
            "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);"
        );
        assert_eq!(
            o.perfdata,
            "/=2643MB;5948;5958;0;5968 /boot=68MB;88;93;0;98 /home=69357MB;253404;253409;0;253414"
        );
    }

    #[test]
    fn long_output_without_first_line_perfdata() {
        let o = split("WARNING: two things\r\nthing one\r\nthing two|'a b'=1s 'c'=2%\r\n");
        assert_eq!(o.output, "WARNING: two things");
        assert_eq!(o.long_output, "thing one\nthing two");
        assert_eq!(o.perfdata, "'a b'=1s 'c'=2%");
    }
}
