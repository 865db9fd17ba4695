//! The engine's numbers as typed samples: a [`Metric`] from the catalog, its label values and
//! a value. [`crate::observe::collect`] reads the jobs into them; `/metrics`
//! ([`crate::observe::prometheus`]), `weir.metrics`, the `weir run` progress line and the tests
//! all read the same [`Samples`], so every place that shows a number shows the same one.

use std::collections::BTreeMap;

use crate::observe::catalog::{self, Kind, Metric};
use crate::observe::latency::{LatencyHistogram, BUCKETS};

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's or a gauge's value.
    Number(f64),
    /// A latency distribution.
    Histogram(LatencyHistogram),
}

/// One series of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its definition.
    pub metric: &'static Metric,
    /// Label values, in the order of `metric.labels`.
    pub labels: Vec<String>,
    /// The value.
    pub value: Value,
}

/// One line of the text exposition: a series name, its labels as text and a number.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine {
    /// `weir_source_records_total`, `weir_end_to_end_latency_seconds_bucket`, ...
    pub name: String,
    /// `job="1:q",source="t"` (escaped), empty when none.
    pub labels: String,
    /// The number.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the metric has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        let i = self.metric.labels.iter().position(|l| *l == key)?;
        self.labels.get(i).map(String::as_str)
    }

    /// A counter's or gauge's value; a histogram's count of observations.
    pub fn number(&self) -> f64 {
        match &self.value {
            Value::Number(v) => *v,
            Value::Histogram(h) => h.count as f64,
        }
    }

    /// The lines it is exposed as (a histogram: cumulative buckets, then sum and count).
    pub fn lines(&self) -> Vec<SeriesLine> {
        let labels = self.label_text(None);
        let line = |suffix: &str, labels: String, value: f64| SeriesLine {
            name: format!("{}{suffix}", self.metric.name),
            labels,
            value,
        };
        match &self.value {
            Value::Number(v) => {
                let suffix = if self.metric.kind == Kind::Counter {
                    "_total"
                } else {
                    ""
                };
                vec![line(suffix, labels, *v)]
            }
            Value::Histogram(h) => {
                let mut out = Vec::with_capacity(BUCKETS.len() + 3);
                out.push(line("_sum", labels.clone(), h.sum));
                out.push(line("_count", labels, h.count as f64));
                let mut cumulative = 0;
                for (i, n) in h.counts.iter().enumerate() {
                    cumulative += n;
                    let le = BUCKETS
                        .get(i)
                        .map_or("+Inf".to_string(), |b| format!("{b:?}"));
                    let labels = self.label_text(Some(&le));
                    out.push(line("_bucket", labels, cumulative as f64));
                }
                out
            }
        }
    }

    /// `k="v",...` with `le` last when given.
    fn label_text(&self, le: Option<&str>) -> String {
        let pairs = self.metric.labels.iter().zip(&self.labels);
        let le = le.map(|v| ("le", v));
        let all = pairs.map(|(k, v)| (*k, v.as_str())).chain(le);
        all.map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every sample of one reading, ordered by metric (catalog order) then labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// The samples of `metric`.
    pub fn of<'a>(&'a self, metric: &'static Metric) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.metric == metric)
    }

    /// The sum of the values of `metric`.
    pub fn sum(&self, metric: &'static Metric) -> f64 {
        self.of(metric).map(Sample::number).sum()
    }

    /// The sample of `metric` with the largest value among those `keep` accepts.
    pub fn max_where(
        &self,
        metric: &'static Metric,
        keep: impl Fn(&Sample) -> bool,
    ) -> Option<&Sample> {
        self.of(metric)
            .filter(|s| keep(s))
            .max_by(|a, b| a.number().total_cmp(&b.number()))
    }

    /// Every sample as lines of the text exposition.
    pub fn lines(&self) -> Vec<SeriesLine> {
        self.0.iter().flat_map(Sample::lines).collect()
    }
}

/// Series of one reading being gathered. Adding to a series already there sums (a table read
/// twice has two source tasks); setting one replaces it.
#[derive(Default)]
pub struct Collector {
    series: BTreeMap<(usize, Vec<String>), (&'static Metric, Value)>,
}

impl Collector {
    /// Add `v` to the series of `metric` with `labels` (values in the metric's label order).
    pub fn add(&mut self, metric: &'static Metric, labels: &[&str], v: f64) {
        let entry = self.entry(metric, labels);
        match entry {
            Value::Number(n) => *n += v,
            Value::Histogram(_) => *entry = Value::Number(v),
        }
    }

    /// Set the series of `metric` with `labels` to `v`.
    pub fn set(&mut self, metric: &'static Metric, labels: &[&str], v: f64) {
        *self.entry(metric, labels) = Value::Number(v);
    }

    /// Raise the series of `metric` with `labels` to `v` if it is below (the busiest of
    /// several subtasks).
    pub fn max(&mut self, metric: &'static Metric, labels: &[&str], v: f64) {
        if let Value::Number(n) = self.entry(metric, labels) {
            *n = n.max(v);
        }
    }

    /// Set the histogram series of `metric` with `labels`.
    pub fn histogram(&mut self, metric: &'static Metric, labels: &[&str], h: LatencyHistogram) {
        *self.entry(metric, labels) = Value::Histogram(h);
    }

    fn entry(&mut self, metric: &'static Metric, labels: &[&str]) -> &mut Value {
        debug_assert_eq!(labels.len(), metric.labels.len(), "{}", metric.name);
        let order = catalog::ALL
            .iter()
            .position(|m| *m == metric)
            .unwrap_or(usize::MAX);
        let key = (order, labels.iter().map(|l| l.to_string()).collect());
        &mut self
            .series
            .entry(key)
            .or_insert((metric, Value::Number(0.0)))
            .1
    }

    /// The samples gathered.
    pub fn finish(self) -> Samples {
        Samples(
            self.series
                .into_iter()
                .map(|((_, labels), (metric, value))| Sample {
                    metric,
                    labels,
                    value,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::catalog::{END_TO_END_LATENCY, JOB_RUNNING, SOURCE_RATE, SOURCE_RECORDS};

    #[test]
    fn series_add_up_or_are_replaced_and_read_by_label() {
        let mut c = Collector::default();
        c.add(&SOURCE_RATE, &["1:q", "t"], 2.0);
        c.add(&SOURCE_RATE, &["1:q", "t"], 3.0);
        c.set(&JOB_RUNNING, &["1:q"], 0.0);
        c.set(&JOB_RUNNING, &["1:q"], 1.0);
        c.add(&SOURCE_RECORDS, &["1:q", "t", "0"], 4.0);
        c.add(&SOURCE_RECORDS, &["2:r", "say \"hi\"", "1"], 6.0);
        let s = c.finish();
        assert_eq!(s.sum(&SOURCE_RATE), 5.0);
        assert_eq!(s.sum(&JOB_RUNNING), 1.0);
        assert_eq!(s.sum(&SOURCE_RECORDS), 10.0);
        let top = s.max_where(&SOURCE_RECORDS, |_| true).unwrap();
        assert_eq!(top.label("source"), Some("say \"hi\""));
        assert_eq!(top.label("operator"), None);
        // Catalog order: records before the running gauge, which comes before the rate.
        let names: Vec<&str> = s.0.iter().map(|x| x.metric.name).collect();
        assert_eq!(names[0], "weir_source_records");
        let line = &top.lines()[0];
        assert_eq!(line.name, "weir_source_records_total");
        assert_eq!(
            line.labels,
            r#"job="2:r",source="say \"hi\"",partition="1""#
        );
    }

    #[test]
    fn a_histogram_is_exposed_as_cumulative_buckets_sum_and_count() {
        let mut h = LatencyHistogram::default();
        h.observe_n(0.2, 2);
        h.observe_n(7.0, 1);
        let mut c = Collector::default();
        c.histogram(&END_TO_END_LATENCY, &["1:q", "out"], h);
        let s = c.finish();
        assert_eq!(s.sum(&END_TO_END_LATENCY), 3.0);
        let lines = s.lines();
        let get = |name: &str, le: &str| {
            lines
                .iter()
                .find(|l| l.name.ends_with(name) && l.labels.contains(le))
                .map(|l| l.value)
        };
        assert_eq!(get("_count", "job"), Some(3.0));
        assert!((get("_sum", "job").unwrap() - 7.4).abs() < 1e-9);
        assert_eq!(get("_bucket", "le=\"0.25\""), Some(2.0));
        assert_eq!(get("_bucket", "le=\"5.0\""), Some(2.0));
        assert_eq!(get("_bucket", "le=\"+Inf\""), Some(3.0));
    }
}
