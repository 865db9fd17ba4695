//! The text edge: [`Samples`] written in the OpenMetrics text format `/metrics` serves (every
//! metric of the catalog with its `# HELP` and `# TYPE`, then its series, then `# EOF`), and
//! that text read back into lines ([`parse`]) for whoever scrapes it, such as the tests of
//! the HTTP endpoint. Inside the engine, numbers are read from [`Samples`], never from text.

use std::fmt::Write;

use crate::observe::catalog::{Kind, ALL};
use crate::observe::collect;
use crate::observe::samples::{Samples, SeriesLine};
use crate::session::stream::JobHandle;

/// Every job's metrics as Prometheus text.
pub fn render(jobs: &[JobHandle]) -> String {
    encode(&collect::samples(jobs))
}

/// `samples` as OpenMetrics text.
pub fn encode(samples: &Samples) -> String {
    let mut out = String::new();
    for metric in ALL {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}.", metric.name, metric.help);
        let _ = writeln!(out, "# TYPE {} {kind}", metric.name);
        for line in samples.of(metric).flat_map(|s| s.lines()) {
            write_line(&mut out, &line);
        }
    }
    out.push_str("# EOF\n");
    out
}

fn write_line(out: &mut String, line: &SeriesLine) {
    let value = number(line.value);
    if line.labels.is_empty() {
        let _ = writeln!(out, "{} {value}", line.name);
    } else {
        let _ = writeln!(out, "{}{{{}}} {value}", line.name, line.labels);
    }
}

/// A value as the text format writes it (`1.0`, `0.25`, `+Inf`, `NaN`).
fn number(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".to_string(),
        f64::INFINITY => "+Inf".to_string(),
        f64::NEG_INFINITY => "-Inf".to_string(),
        v => format!("{v:?}"),
    }
}

impl SeriesLine {
    /// The value of label `key`, if present (values may hold commas and escaped quotes).
    pub fn label(&self, key: &str) -> Option<String> {
        let mut rest = self.labels.as_str();
        while let Some((k, after)) = rest.split_once("=\"") {
            let (value, tail) = quoted(after);
            if k.trim_start_matches(',') == key {
                return Some(value);
            }
            rest = tail;
        }
        None
    }
}

/// The text up to the closing quote (unescaped), and what follows it.
fn quoted(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(if n == 'n' { '\n' } else { n });
                }
            }
            '"' => return (out, &s[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

/// Every series line of scraped `text` (comments skipped).
pub fn parse(text: &str) -> Vec<SeriesLine> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(SeriesLine {
                name: name.to_string(),
                labels: labels.to_string(),
                value: value.parse::<f64>().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::catalog::{BUILD_INFO, SOURCE_RECORDS};
    use crate::observe::samples::Collector;

    #[test]
    fn what_is_written_reads_back_line_for_line() {
        let mut c = Collector::default();
        c.add(
            &SOURCE_RECORDS,
            &["3:insert into a, b", "say \"hi\"\n", "0"],
            3.0,
        );
        c.set(&BUILD_INFO, &["0.1.0"], 1.0);
        let samples = c.finish();
        let text = encode(&samples);
        assert!(text.starts_with("# HELP weir_source_records Records read by a source.\n"));
        assert!(text.contains("# TYPE weir_source_records counter\n"));
        assert!(
            text.contains("weir_build_info{version=\"0.1.0\"} 1.0\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        let back = parse(&text);
        assert_eq!(back, samples.lines());
        assert_eq!(back[0].label("job").as_deref(), Some("3:insert into a, b"));
        assert_eq!(back[0].label("source").as_deref(), Some("say \"hi\"\n"));
        assert_eq!(back[0].label("reason"), None);
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
