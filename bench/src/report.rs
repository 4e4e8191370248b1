//! The benchmark's table, BENCHMARKS.md and its chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::load::Latencies;

pub struct Row {
    name: String,
    /// Through the bridge.
    bridge: f64,
    /// Straight to the backend, where there is a comparison.
    direct: Option<f64>,
    unit: &'static str,
    /// Bridge ÷ direct for rates, direct ÷ bridge would read backwards.
    target: Option<(String, bool)>,
}

impl Row {
    pub fn compare(name: &str, bridge: f64, direct: f64, min_ratio: Option<f64>) -> Self {
        Self::compare_to("direct", name, bridge, direct, min_ratio)
    }

    /// A rate beside the rate of `baseline`, which fills the direct column.
    pub fn compare_to(
        baseline: &str,
        name: &str,
        bridge: f64,
        direct: f64,
        min_ratio: Option<f64>,
    ) -> Self {
        let target = min_ratio.map(|min| {
            (
                format!("≥ {:.0}% of {baseline}", min * 100.0),
                bridge / direct >= min,
            )
        });
        Self {
            name: name.into(),
            bridge,
            direct: Some(direct),
            unit: "/s",
            target,
        }
    }

    /// A cost through the bridge beside the same cost direct.
    pub fn cost(name: &str, bridge: f64, direct: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            bridge,
            direct: Some(direct),
            unit,
            target: None,
        }
    }

    pub fn single(
        name: &str,
        value: f64,
        unit: &'static str,
        target: Option<(&str, bool)>,
    ) -> Self {
        Self {
            name: name.into(),
            bridge: value,
            direct: None,
            unit,
            target: target.map(|(text, met)| (text.to_owned(), met)),
        }
    }

    fn ratio(&self) -> Option<f64> {
        self.direct.map(|direct| self.bridge / direct)
    }
}

pub struct Report {
    machine: String,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(machine: String) -> Self {
        Self {
            machine,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn unary(
        &mut self,
        name: &str,
        ws: &mut Latencies,
        direct: &mut Latencies,
        secs: f64,
        min_ratio: Option<f64>,
    ) {
        self.push(Row::compare(
            &format!("{name}: calls/s"),
            ws.count() as f64 / secs,
            direct.count() as f64 / secs,
            min_ratio,
        ));
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            let bridge = f64::from(ws.quantile(q));
            let backend = f64::from(direct.quantile(q));
            let target = (min_ratio.is_some() && label == "p99")
                .then(|| ("≤ 2× direct".to_owned(), bridge <= 2.0 * backend));
            self.rows.push(Row {
                name: format!("{name}: {label} latency"),
                bridge,
                direct: Some(backend),
                unit: "µs",
                target,
            });
        }
    }

    pub fn stream(&mut self, protocol: &str, messages: i32, ws: Duration, direct: Duration) {
        let rate = |time: Duration| f64::from(messages) / time.as_secs_f64();
        self.push(Row::compare(
            &format!("W2 {protocol} server stream of {messages} messages: messages/s"),
            rate(ws),
            rate(direct),
            Some(0.5),
        ));
        self.rows.push(Row {
            name: format!("W2 {protocol} server stream of {messages} messages: time to end"),
            bridge: ws.as_secs_f64() * 1000.0,
            direct: Some(direct.as_secs_f64() * 1000.0),
            unit: "ms",
            target: None,
        });
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {}", self.machine);
        let _ = writeln!(
            out,
            "{:<62} {:>10} {:>12} {:>12}  target",
            "workload", "ratio", "bridge", "direct"
        );
        for row in &self.rows {
            let ratio = row.ratio().map_or("".into(), |r| format!("{r:.2}"));
            let direct = row
                .direct
                .map_or("".into(), |d| format!("{d:.0}{}", row.unit));
            let target = row.target.as_ref().map_or(String::new(), |(text, met)| {
                format!("{text} {}", if *met { "met" } else { "MISSED" })
            });
            let _ = writeln!(
                out,
                "{:<62} {:>10} {:>12} {:>12}  {}",
                row.name,
                ratio,
                format!("{:.1}{}", row.bridge, row.unit),
                direct,
                target
            );
        }
        out
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `cargo run --release -p wsgrpc-bench`. Every workload runs twice in the \
             same run: through the bridge (a WebSocket client speaking wire protocol v1, and v2 where a row says so) and straight \
             against the tonic backend over gRPC. Backend, bridge and load generator are separate \
             processes sharing one machine: {}.\n",
            self.machine
        );
        let _ = writeln!(
            md,
            "Ratios are bridge ÷ direct: for rates higher is better, for latencies lower is.\n"
        );
        let _ = writeln!(md, "![bridge ÷ direct](docs/benchmarks.svg)\n");
        let _ = writeln!(md, "| workload | ratio | bridge | direct | target |");
        let _ = writeln!(md, "|---|---:|---:|---:|---|");
        for row in &self.rows {
            let ratio = row.ratio().map_or("".into(), |r| format!("{r:.2}"));
            let direct = row
                .direct
                .map_or("".into(), |d| format!("{d:.0} {}", row.unit));
            let target = row.target.as_ref().map_or(String::new(), |(text, met)| {
                format!("{text}: {}", if *met { "met" } else { "**missed**" })
            });
            let _ = writeln!(
                md,
                "| {} | {ratio} | {:.1} {} | {direct} | {target} |",
                row.name, row.bridge, row.unit
            );
        }
        let _ = writeln!(
            md,
            "\nWhere the time goes, what was changed and what it gained: \
             [docs/PERFORMANCE.md](docs/PERFORMANCE.md). Micro-benchmarks of the envelope and \
             of JSON ⇄ protobuf per message size: `cargo bench -p wsgrpc-bench --bench codec`."
        );
        // The browser benchmark (npm run bench:browser) writes its own
        // sections from its first marker on, with what was written by hand
        // between them; all of that stays as it is.
        let path = dir.join("BENCHMARKS.md");
        if let Ok(old) = std::fs::read_to_string(&path)
            && let Some(start) = old.find("<!-- browser:start -->")
        {
            let _ = write!(md, "\n{}", &old[start..]);
        }
        std::fs::write(path, md)?;
        std::fs::create_dir_all(dir.join("docs"))?;
        std::fs::write(dir.join("docs/benchmarks.svg"), self.chart())
    }

    /// Horizontal bars of bridge ÷ direct for every rate, with 1.0 marked.
    /// A plain SVG: six rectangles and their labels need no plotting library.
    fn chart(&self) -> String {
        let rates: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.unit == "/s" && r.direct.is_some())
            .collect();
        let (label_width, bar_width, row_height) = (420.0, 360.0, 28.0);
        let height = 40.0 + row_height * rates.len() as f64;
        let scale = |ratio: f64| bar_width * (ratio.min(1.5) / 1.5);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="13">
<text x="8" y="18" font-weight="bold">Throughput through the bridge ÷ straight to the backend ({machine})</text>
"#,
            w = label_width + bar_width + 80.0,
            machine = xml_escape(&self.machine)
        );
        for (i, row) in rates.iter().enumerate() {
            let y = 30.0 + row_height * i as f64;
            let ratio = row.ratio().unwrap_or(0.0);
            let _ = writeln!(
                svg,
                r##"<text x="8" y="{ty}">{name}</text><rect x="{label_width}" y="{y}" width="{bw:.1}" height="18" fill="#3b82f6"/><text x="{tx:.1}" y="{ty}">{ratio:.2}</text>"##,
                ty = y + 14.0,
                name = xml_escape(&row.name),
                bw = scale(ratio),
                tx = label_width + scale(ratio) + 6.0,
            );
        }
        let one = label_width + scale(1.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{one}" y1="26" x2="{one}" y2="{height}" stroke="#111" stroke-dasharray="4 3"/><text x="{tx}" y="{height}" font-size="11">1.0 = direct</text>
</svg>"##,
            tx = one + 4.0,
        );
        svg
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_keeps_the_browser_sections_and_what_lies_between_them() {
        let dir = std::env::temp_dir().join(format!("wsgrpc-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let browser = "<!-- browser:start -->\nbrowser table\n<!-- browser:end -->\n\n\
                       Read by hand.\n\n<!-- browser-rtt:start -->\nround trips\n<!-- browser-rtt:end -->\n";
        std::fs::write(
            dir.join("BENCHMARKS.md"),
            format!("# Benchmarks\n\nold rows\n\n{browser}"),
        )
        .unwrap();
        let mut report = Report::new("a machine".into());
        report.push(Row::single("new row", 1.0, "µs", None));
        report.write(&dir).unwrap();
        let written = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(written.contains("| new row |"), "{written}");
        assert!(!written.contains("old rows"), "{written}");
        assert!(written.ends_with(browser), "{written}");
    }
}
