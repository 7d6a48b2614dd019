//! Latency histograms with fixed buckets, rendered in the Prometheus text
//! format after the recorder's own metrics.
//!
//! The Prometheus exporter stores every histogram sample with a timestamp
//! (for summaries, which the gateway does not use) in a lock-free bucket
//! that its upkeep drains and sorts into buckets later: about 150
//! instructions per sample on the request path and 80 more in the upkeep.
//! The proxy takes two samples per request, so those were a fortieth of
//! its user-space work. Here a sample is one search over fourteen bounds
//! and two atomic adds. The bounds are the ones the binary gives the
//! exporter, so these series aggregate like every other histogram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the `+Inf` bucket follows).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for the comparison on the request path.
const BOUNDS_NANOS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One series: samples per bucket (not cumulative; the last is `+Inf`)
/// and their sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Count one sample.
    pub(crate) fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BOUNDS_NANOS.len());
        // Relaxed: a scrape may see a sample's count without its sum for a
        // moment, as with any set of independent counters.
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// A registered series: metric name, one label, and the histogram.
struct Series {
    name: &'static str,
    label: &'static str,
    value: String,
    histogram: Arc<Histogram>,
}

/// Help text per metric name.
struct Family {
    name: &'static str,
    help: &'static str,
}

/// Every series of the process, in registration order. Locked only to
/// register (when a config is built) and to render (a scrape).
static REGISTRY: Mutex<(Vec<Family>, Vec<Series>)> = Mutex::new((Vec::new(), Vec::new()));

/// The histogram of `name{label="value"}`, made on first use: a route or
/// upstream that survives a reload keeps counting into the same series.
pub(crate) fn histogram(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    value: &str,
) -> Arc<Histogram> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let (families, series) = &mut *registry;
    if !families.iter().any(|f| f.name == name) {
        families.push(Family { name, help });
    }
    if let Some(s) = series
        .iter()
        .find(|s| s.name == name && s.label == label && s.value == value)
    {
        return Arc::clone(&s.histogram);
    }
    let histogram = Arc::new(Histogram::default());
    series.push(Series {
        name,
        label,
        value: value.to_owned(),
        histogram: Arc::clone(&histogram),
    });
    histogram
}

/// Append every series to `out` in the Prometheus text format (0.0.4).
pub(crate) fn render(out: &mut String) {
    let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let (families, series) = &*registry;
    for family in families {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} histogram", family.name);
        for s in series.iter().filter(|s| s.name == family.name) {
            let label = format!("{}=\"{}\"", s.label, escape(&s.value));
            let mut cumulative = 0u64;
            for (i, count) in s.histogram.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
                let _ = writeln!(out, "{}_bucket{{{label},le=\"{le}\"}} {cumulative}", s.name);
            }
            let sum = s.histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{}_sum{{{label}}} {sum}", s.name);
            let _ = writeln!(out, "{}_count{{{label}}} {cumulative}", s.name);
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_bounds_are_the_second_bounds() {
        for (s, n) in BUCKETS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }

    #[test]
    fn samples_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.record(Duration::from_micros(500)); // on the bound: le="0.0005"
        h.record(Duration::from_micros(501));
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(60)); // +Inf
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[4], 1, "7 ms is in le=0.01");
        assert_eq!(counts[14], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        let expect = 500_000 + 501_000 + 7_000_000 + 60_000_000_000;
        assert_eq!(h.sum_nanos.load(Ordering::Relaxed), expect);
    }

    #[test]
    fn a_series_is_registered_once_and_rendered_cumulatively() {
        let name = "sluice_test_latency_seconds";
        let a = histogram(name, "Test latencies", "route", "a\"b");
        let again = histogram(name, "Test latencies", "route", "a\"b");
        assert!(Arc::ptr_eq(&a, &again));
        a.record(Duration::from_micros(100));
        a.record(Duration::from_millis(30));
        a.record(Duration::from_millis(30));
        let mut out = String::new();
        render(&mut out);
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(name) && (l.starts_with('#') || l.contains("a\\\"b")))
            .collect();
        assert_eq!(lines[0], format!("# HELP {name} Test latencies"));
        assert_eq!(lines[1], format!("# TYPE {name} histogram"));
        let series = &lines[2..];
        assert_eq!(series.len(), 15 + 2, "15 buckets, sum, count: {series:?}");
        assert_eq!(
            series[0],
            format!("{name}_bucket{{route=\"a\\\"b\",le=\"0.0005\"}} 1")
        );
        assert_eq!(
            series[5],
            format!("{name}_bucket{{route=\"a\\\"b\",le=\"0.025\"}} 1")
        );
        assert_eq!(
            series[6],
            format!("{name}_bucket{{route=\"a\\\"b\",le=\"0.05\"}} 3")
        );
        assert_eq!(
            series[14],
            format!("{name}_bucket{{route=\"a\\\"b\",le=\"+Inf\"}} 3")
        );
        assert_eq!(series[15], format!("{name}_sum{{route=\"a\\\"b\"}} 0.0601"));
        assert_eq!(series[16], format!("{name}_count{{route=\"a\\\"b\"}} 3"));
    }
}
