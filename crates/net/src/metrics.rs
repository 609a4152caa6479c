//! Prometheus text exposition (format 0.0.4), for `/metrics`.

use std::fmt::Write;

/// Builds a metrics page.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Exposition::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter without labels (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// A counter with one label, a sample per label value.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.header(name, help, "counter");
        for (value_of_label, value) in values {
            let _ = writeln!(
                self.out,
                "{name}{{{label}=\"{}\"}} {value}",
                escape(value_of_label)
            );
        }
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// A gauge with one label.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) {
        self.header(name, help, "gauge");
        for (value_of_label, value) in values {
            let _ = writeln!(
                self.out,
                "{name}{{{label}=\"{}\"}} {value}",
                escape(value_of_label)
            );
        }
    }

    /// A histogram: `counts[i]` values at most `bounds[i]`, the last count above them all.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.header(name, help, "histogram");
        let mut cumulative = 0;
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative += count;
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total: u64 = counts.iter().sum();
        let _ = writeln!(
            self.out,
            "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}"
        );
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one sample back from a page: `name` or `name{label="value"}` (for tests and
/// benchmarks that scrape a node).
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_prometheus_text() {
        let mut page = Exposition::new();
        page.counter("a_total", "A.", 3);
        page.counters("b_total", "B.", "reason", [("x", 1), ("y\"z", 2)]);
        page.histogram("c_seconds", "C.", &[0.1, 1.0], &[2, 1, 4], 9.5);
        let page = page.finish();
        assert!(page.contains("# TYPE a_total counter\na_total 3\n"));
        assert!(page.contains("b_total{reason=\"y\\\"z\"} 2"));
        assert!(page.contains("c_seconds_bucket{le=\"1\"} 3\nc_seconds_bucket{le=\"+Inf\"} 7"));
        assert_eq!(sample(&page, "a_total"), Some(3.0));
        assert_eq!(sample(&page, "b_total{reason=\"x\"}"), Some(1.0));
        assert_eq!(sample(&page, "c_seconds_count"), Some(7.0));
        assert_eq!(sample(&page, "missing"), None);
    }
}
