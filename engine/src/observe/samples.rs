//! The engine's metrics as samples (`name`, labels, value) parsed from the Prometheus text that
//! `/metrics` serves. `weir.metrics` and the `weir run` progress line read these, so every place
//! that shows a number shows the one `/metrics` has.

use crate::session::stream::JobHandle;

/// One line of the exposition: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name with its suffix (`weir_source_records_total`).
    pub name: String,
    /// The labels as written (`job="1:q",source="readings"`), empty when none.
    pub labels: String,
    /// The value.
    pub value: f64,
}

impl Sample {
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

/// Every sample of `text` (comments skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(Sample {
                name: name.to_string(),
                labels: labels.to_string(),
                value: value.parse::<f64>().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// The samples of every job (and the process) right now.
pub fn samples(jobs: &[JobHandle]) -> Vec<Sample> {
    parse(&crate::observe::prometheus::render(jobs))
}

/// The sum of every sample named `name`.
pub fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// The largest sample named `name` whose labels satisfy `keep`.
pub fn max_where(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .map(|s| s.value)
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_labels_and_sums() {
        let text = "# HELP x y\nweir_a_total{job=\"1:q\",source=\"t\"} 3\nweir_a_total{job=\"2:r\"} 4\nweir_b 1.5\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("source").as_deref(), Some("t"));
        assert_eq!(s[0].label("job").as_deref(), Some("1:q"));
        let odd = parse("m{job=\"3:insert into a, b\",reason=\"say \\\"hi\\\"\"} 1");
        assert_eq!(odd[0].label("job").as_deref(), Some("3:insert into a, b"));
        assert_eq!(odd[0].label("reason").as_deref(), Some("say \"hi\""));
        assert_eq!(s[1].label("source"), None);
        assert_eq!(sum(&s, "weir_a_total"), 7.0);
        assert_eq!(max_where(&s, "weir_b", |_| true), Some(1.5));
    }
}
