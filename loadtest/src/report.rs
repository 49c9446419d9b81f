//! Reports: latency summaries, histogram (de)serialization for merging
//! worker results, machine facts, the JSON document and the HTML report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Percentiles of a latency histogram recorded in microseconds, in ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// Summarises `h` (values in microseconds).
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// One line for the terminal.
    pub(crate) fn line(&self, name: &str) -> String {
        format!(
            "{name:<8} n={:<8} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  max {:>8.2} ms",
            self.count, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

/// A histogram for microsecond latencies from 1 µs to 10 minutes.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records `us` (clamped into the histogram's range).
pub(crate) fn record(h: &mut Histogram<u64>, us: u128) {
    let _ = h.record((us as u64).clamp(1, 600_000_000));
}

/// The histogram in HdrHistogram's V2 format, base64-encoded, so that a
/// worker process can hand it to its parent for exact merging.
pub(crate) fn encode_histogram(h: &Histogram<u64>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serializing histogram: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The inverse of [`encode_histogram`].
pub(crate) fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .context("histogram is not base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("deserializing histogram: {e:?}"))?;
    // Give it the same bounds as ours so that adding never fails.
    let mut out = histogram();
    out.add(&h)
        .map_err(|e| anyhow::anyhow!("merging histogram: {e:?}"))?;
    Ok(out)
}

/// Counts failures by reason; nothing is dropped.
pub(crate) type Errors = BTreeMap<String, u64>;

/// Adds `other` into `into`.
pub(crate) fn merge_errors(into: &mut Errors, other: &Errors) {
    for (k, v) in other {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// The longest time any scenario accepts, in seconds: a day. Keeps every
/// deadline (`now + duration`) far from overflowing.
pub(crate) const MAX_SECS: u64 = 86_400;
/// [`MAX_SECS`] in milliseconds, for the millisecond settings.
pub(crate) const MAX_MS: u64 = MAX_SECS * 1000;

/// The largest count (sessions, writers, rows, jobs...) any scenario
/// accepts: far past what one machine can drive, short of sizes whose
/// buffers could not be allocated.
pub(crate) const MAX_COUNT: u64 = 10_000_000;

/// A clap parser for counts up to [`MAX_COUNT`].
pub(crate) fn count() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(..=MAX_COUNT)
}

/// Parses a per-second rate for clap: finite, above 0, at most a million
/// (a timer period must stay above zero, and `inf` or `NaN` would not).
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err("must be a number above 0 and at most 1000000".into())
    }
}

/// A short, stable reason for a failure, naming the limit where one is
/// recognisable (ports, descriptors, memory, server refusals).
pub(crate) fn reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let lower = text.to_lowercase();
    let known = [
        (
            "too many open files",
            "descriptors (EMFILE: too many open files)",
        ),
        (
            "address not available",
            "ports (EADDRNOTAVAIL: no free source port)",
        ),
        ("address already in use", "ports (EADDRINUSE)"),
        ("cannot allocate memory", "memory (ENOMEM)"),
        ("connection refused", "server refused (ECONNREFUSED)"),
        ("connection reset", "server reset the connection"),
        ("http error", "server refused the upgrade (HTTP error)"),
        ("connect timed out", "connect timed out"),
        ("no frame in time", "no answer in time"),
        ("closed by server", "closed by server"),
        ("connection closed", "connection closed"),
        ("expected welcome", "hello refused"),
    ];
    for (needle, label) in known {
        if lower.contains(needle) {
            return label.to_owned();
        }
    }
    text.chars().take(80).collect()
}

/// Facts about the machine the run happened on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) hostname: String,
    pub(crate) cpu_model: String,
    pub(crate) cores: usize,
    pub(crate) memory_total_kib: u64,
    pub(crate) memory_available_kib: u64,
    pub(crate) kernel: String,
    pub(crate) nofile_limit: u64,
    pub(crate) date: String,
}

impl Machine {
    /// Reads /proc and the process limits.
    pub(crate) fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let mem = |key: &str| {
            meminfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_total_kib: mem("MemTotal:"),
            memory_available_kib: mem("MemAvailable:"),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            nofile_limit: rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(0),
            date: chrono::Utc::now().to_rfc3339(),
        }
    }
}

/// Raises the open-files limit to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
                Ok(()) => hard,
                Err(_) => soft,
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// Sum of `VmRSS` over the given processes, in KiB (0 for a missing one).
pub(crate) fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Where to write the reports.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub(crate) struct Output {
    /// Write the JSON report to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write an HTML report with charts to this file.
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
}

/// One line series: a name and its (x, y) points.
pub(crate) type Series = (String, Vec<(f64, f64)>);

/// The charts of an HTML report.
#[derive(Default)]
pub(crate) struct Charts {
    /// Per-second latency lines (x: seconds since start, y: ms).
    pub(crate) latency_over_time: Vec<Series>,
    /// Histograms whose percentile curves to draw (values in µs).
    pub(crate) percentiles: Vec<(String, Histogram<u64>)>,
    /// Sessions (or jobs in flight) over time.
    pub(crate) sessions_over_time: Vec<Series>,
}

/// Per-second p50/p99/max lines from (seconds since start, µs) samples.
pub(crate) fn latency_lines(name: &str, samples: &[(f64, u64)]) -> Vec<Series> {
    let mut buckets: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    for &(t, us) in samples {
        record(
            buckets.entry(t.max(0.0) as u64).or_insert_with(histogram),
            us.into(),
        );
    }
    let line = |label: &str, q: Option<f64>| -> Series {
        (
            format!("{name} {label}"),
            buckets
                .iter()
                .map(|(t, h)| {
                    let us = match q {
                        Some(q) => h.value_at_quantile(q),
                        None => h.max(),
                    };
                    (*t as f64 + 0.5, us as f64 / 1000.0)
                })
                .collect(),
        )
    };
    vec![
        line("p50", Some(0.5)),
        line("p99", Some(0.99)),
        line("max", None),
    ]
}

/// Percentile curve of `h`: x = number of nines (-log10(1-q)), y = ms.
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut nines = 0.0f64;
    while nines <= 4.0 {
        let q = 1.0 - 10f64.powf(-nines);
        points.push((nines, h.value_at_quantile(q) as f64 / 1000.0));
        nines += 0.05;
    }
    points.push((4.5, h.max() as f64 / 1000.0));
    points
}

/// A line chart as an SVG string, drawn by plotters.
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    percentile_axis: bool,
) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (1e-9f64, 1e-9f64);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max * 1.1)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let x_fmt = |x: &f64| {
            if percentile_axis {
                if *x > 4.2 {
                    "max".to_owned()
                } else {
                    format!("p{}", 100.0 - 100.0 * 10f64.powf(-*x))
                }
            } else {
                format!("{x:.0}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&x_fmt)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML report: the summary lines, the charts, and the JSON document.
pub(crate) fn html(
    title: &str,
    summary: &str,
    charts: &Charts,
    json: &serde_json::Value,
) -> anyhow::Result<String> {
    let mut body = String::new();
    if !charts.latency_over_time.is_empty() {
        body.push_str(&line_chart(
            "Latency over time (per second)",
            "seconds since start",
            "ms",
            &charts.latency_over_time,
            false,
        )?);
    }
    if !charts.percentiles.is_empty() {
        let series: Vec<Series> = charts
            .percentiles
            .iter()
            .map(|(name, h)| (name.clone(), percentile_curve(h)))
            .collect();
        body.push_str(&line_chart(
            "Latency by percentile",
            "percentile",
            "ms",
            &series,
            true,
        )?);
    }
    if !charts.sessions_over_time.is_empty() {
        body.push_str(&line_chart(
            "Sessions over time",
            "seconds since start",
            "count",
            &charts.sessions_over_time,
            false,
        )?);
    }
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}\
         pre{{background:#f4f4f4;padding:1em;overflow:auto}} svg{{display:block;margin:1em 0}}</style>\
         </head><body><h1>{t}</h1><h2>Summary</h2><pre>{s}</pre><h2>Charts</h2>{body}\
         <h2>JSON report</h2><pre>{j}</pre></body></html>\n",
        t = escape(title),
        s = escape(summary),
        j = escape(&serde_json::to_string_pretty(json)?),
    ))
}

/// Prints the summary, and writes the JSON and HTML reports where asked
/// (the JSON goes to stdout when no file is given).
pub(crate) fn emit(
    output: &Output,
    title: &str,
    summary: &str,
    charts: &Charts,
    json: &serde_json::Value,
) -> anyhow::Result<()> {
    print!("{summary}");
    let text = serde_json::to_string_pretty(json)?;
    match &output.json {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{text}"),
    }
    if let Some(path) = &output.html {
        std::fs::write(path, html(title, summary, charts, json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A progress spinner on stderr (hidden when `hidden`).
pub(crate) fn progress(hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_finite_positive_and_bounded() {
        assert_eq!(parse_rate("10"), Ok(10.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN", "1e12", "ten"] {
            assert!(parse_rate(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn histograms_survive_encoding_and_merge_exactly() {
        let mut a = histogram();
        let mut b = histogram();
        for v in 1..=1000u64 {
            a.record(v * 10).unwrap();
        }
        for v in 1..=1000u64 {
            b.record(v * 1000).unwrap();
        }
        let mut merged = decode_histogram(&encode_histogram(&a).unwrap()).unwrap();
        merged
            .add(decode_histogram(&encode_histogram(&b).unwrap()).unwrap())
            .unwrap();
        let mut direct = a.clone();
        direct.add(&b).unwrap();
        assert_eq!(merged.len(), 2000);
        assert_eq!(merged.max(), direct.max());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(merged.value_at_quantile(q), direct.value_at_quantile(q));
        }
        let l = Latency::of(&merged);
        assert_eq!(l.count, 2000);
        assert!(l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms);
    }

    #[test]
    fn empty_histogram_summarises_to_zeroes() {
        let l = Latency::of(&histogram());
        assert_eq!(l.count, 0);
        assert_eq!(l.max_ms, 0.0);
        assert!(decode_histogram("not base64!").is_err());
    }

    #[test]
    fn html_report_has_three_svg_charts_and_escaped_json() {
        let mut h = histogram();
        let mut samples = Vec::new();
        for i in 0..500u64 {
            h.record(100 + i).unwrap();
            samples.push((i as f64 / 100.0, 100 + i));
        }
        let charts = Charts {
            latency_over_time: latency_lines("pong", &samples),
            percentiles: vec![("pong".into(), h)],
            sessions_over_time: vec![("sessions".into(), vec![(0.0, 0.0), (5.0, 10.0)])],
        };
        let json = serde_json::json!({ "scenario": "<ping>", "count": 500 });
        let page = html("ping <report>", "p99 1 ms\n", &charts, &json).unwrap();
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("&lt;ping&gt;"));
        assert!(page.contains("Latency over time"));
        assert!(!page.contains("<ping>"));
    }

    #[test]
    fn errors_merge_and_reasons_name_limits() {
        let mut a = Errors::new();
        a.insert("x".into(), 2);
        let mut b = Errors::new();
        b.insert("x".into(), 3);
        b.insert("y".into(), 1);
        merge_errors(&mut a, &b);
        assert_eq!(a["x"], 5);
        assert_eq!(a["y"], 1);
        let e = anyhow::anyhow!("Too many open files (os error 24)");
        assert!(reason(&e).starts_with("descriptors"));
    }

    #[test]
    fn machine_facts_are_read() {
        let m = Machine::read();
        assert!(m.cores >= 1);
        assert!(m.memory_total_kib > 0);
    }
}
