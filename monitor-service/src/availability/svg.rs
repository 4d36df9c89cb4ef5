//! The run drawn as one self-contained SVG (no external assets, no script), to attach to a
//! report or open in a browser:
//!
//! - every successful request as a dot, its latency (logarithmic scale, ms) over the second it
//!   was sent in;
//! - every failed request as a cross in a band above the plot, one row per [`Kind`], each kind
//!   its own colour, with a tooltip (`<title>`) saying when and what;
//! - the ASR's 2 s line, dashed and labelled;
//! - axes with ticks in seconds and milliseconds, and a title with the URL and the verdict.
//!
//! The markup is composed with the `svg` crate, which escapes text and attribute values, so a
//! URL with `&` or `<` in it cannot break the document.

use std::time::Duration;

use ::svg::node::element::{Definitions, Group, Line, Path, Rectangle, Style, Text, Title};
use ::svg::Document;

use super::plan::Plan;
use super::{millis, Kind, Report, Sample, ASR_LATENCY};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 930.0;
/// The failure band: one row per kind.
const BAND_TOP: f64 = 64.0;
const BAND_ROW: f64 = 14.0;
const PLOT_TOP: f64 = BAND_TOP + BAND_ROW * Kind::ALL.len() as f64 + 12.0;
const PLOT_BOTTOM: f64 = 460.0;

const CSS: &str = "text{font-family:sans-serif;font-size:12px;fill:#222}\
.titulo{font-size:15px;font-weight:bold}\
.eje{stroke:#444;stroke-width:1}\
.rejilla{stroke:#ddd;stroke-width:1}\
.banda{fill:#f6f6f6}\
.ok{stroke:#1f77b4;stroke-width:3;stroke-linecap:round;fill:none;opacity:.55}\
.fallo{stroke-width:1.6;fill:none}\
.asr{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:6 4}";

/// A colour per kind, apart from the successes' blue.
fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Timeout => "#e67e00",
        Kind::Unavailable => "#d62728",
        Kind::OtherStatus => "#a0185e",
        Kind::Refused => "#7b3fbf",
        Kind::Connection => "#6b4a2b",
    }
}

/// What the chart is made of.
pub struct Chart<'a> {
    pub url: &'a str,
    pub plan: &'a Plan,
    /// The length of the time axis: the run's planned length, or what it lasted when it was cut
    /// short; zero to fit the samples alone.
    pub span: Duration,
    pub report: &'a Report,
    /// In any order.
    pub samples: &'a [Sample],
}

/// Rounded to a tenth of a pixel: enough for the eye, and a file a third the size.
fn px(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A value for a tick label: no trailing zeros (0.1, 1, 10, 2.5).
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The time axis, seconds from the start: as long as the plan, or the last request sent.
struct TimeAxis {
    span: f64,
}

impl TimeAxis {
    fn x(&self, d: Duration) -> f64 {
        px(LEFT + (RIGHT - LEFT) * d.as_secs_f64() / self.span)
    }

    /// A step of 1, 2 or 5 times a power of ten giving at most ten intervals.
    fn step(&self) -> f64 {
        let raw = self.span / 10.0;
        let power = 10f64.powf(raw.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * power)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * power)
    }

    fn ticks(&self) -> Vec<f64> {
        let step = self.step();
        let n = (self.span / step + 1e-9).floor() as usize;
        (0..=n).map(|i| i as f64 * step).collect()
    }
}

/// The latency axis, milliseconds on a logarithmic scale from the decade below the fastest
/// answer to the decade above the slowest or the ASR line, whichever is higher.
struct LatencyAxis {
    lo: f64,
    hi: f64,
}

impl LatencyAxis {
    fn new(samples: &[Sample]) -> LatencyAxis {
        let ms: Vec<f64> = samples.iter().map(|s| millis(s.latency)).collect();
        let fastest = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let slowest = ms.iter().copied().fold(millis(ASR_LATENCY), f64::max);
        // Anything under 10 µs is drawn at the bottom; the floor keeps log10 finite.
        let lo = 10f64.powf(fastest.max(0.01).log10().floor()).min(1.0);
        let hi = 10f64.powf((slowest * 1.0001).log10().ceil());
        LatencyAxis { lo, hi }
    }

    fn y(&self, latency_ms: f64) -> f64 {
        let v = latency_ms.clamp(self.lo, self.hi);
        let share = (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        px(PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * share)
    }

    /// One tick per decade.
    fn ticks(&self) -> Vec<f64> {
        let (from, to) = (
            self.lo.log10().round() as i32,
            self.hi.log10().round() as i32,
        );
        (from..=to).map(|e| 10f64.powi(e)).collect()
    }
}

fn text(x: f64, y: f64, anchor: &str, content: impl Into<String>) -> Text {
    Text::new(content)
        .set("x", px(x))
        .set("y", px(y))
        .set("text-anchor", anchor)
}

/// The chart as an SVG document.
pub fn render(chart: &Chart) -> String {
    let last = chart
        .samples
        .iter()
        .map(|s| s.offset)
        .max()
        .unwrap_or_default();
    let span = chart.span.max(last);
    let time = TimeAxis {
        span: span.as_secs_f64().max(0.1),
    };
    let latency = LatencyAxis::new(chart.samples);
    let r = chart.report;

    let heading = format!("{} · {}", chart.url, r.verdict());
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", HEIGHT)
        .set("viewBox", (0, 0, WIDTH, HEIGHT))
        .add(Title::new(format!("availability-check: {heading}")))
        .add(Definitions::new().add(Style::new(CSS)))
        .add(
            Rectangle::new()
                .set("width", WIDTH)
                .set("height", HEIGHT)
                .set("fill", "white"),
        )
        .add(text(LEFT, 24.0, "start", heading).set("class", "titulo"))
        .add(text(
            LEFT,
            44.0,
            "start",
            format!(
                "{} · {} solicitudes, {} fallidas · disponibilidad {:.2} % · p50 {:.1} ms, \
                 p99 {:.1} ms, máx. {:.1} ms",
                chart.plan,
                r.total,
                r.failures,
                r.availability,
                millis(r.p50),
                millis(r.p99),
                millis(r.max)
            ),
        ));

    // The failure band, one labelled row per kind.
    let mut band = Group::new().set("id", "fallos");
    for kind in Kind::ALL {
        let top = BAND_TOP + BAND_ROW * kind.index() as f64;
        band = band
            .add(
                Rectangle::new()
                    .set("class", "banda")
                    .set("x", LEFT)
                    .set("y", top)
                    .set("width", RIGHT - LEFT)
                    .set("height", BAND_ROW - 2.0),
            )
            .add(
                text(LEFT - 6.0, top + BAND_ROW - 4.0, "end", kind.short())
                    .set("fill", colour(kind))
                    .set("font-size", 10),
            );
    }
    for s in chart.samples {
        let Some(kind) = s.outcome.kind() else {
            continue;
        };
        let (x, y) = (
            time.x(s.offset),
            BAND_TOP + BAND_ROW * kind.index() as f64 + (BAND_ROW - 2.0) / 2.0,
        );
        band = band.add(
            Path::new()
                .set("class", format!("fallo fallo-{}", kind.short()))
                .set("stroke", colour(kind))
                .set(
                    "d",
                    format!("M{} {}l8 8m0 -8l-8 8", px(x - 4.0), px(y - 4.0)),
                )
                .add(Title::new(format!(
                    "{:.3} s: {}, {:.1} ms",
                    s.offset.as_secs_f64(),
                    s.outcome,
                    millis(s.latency)
                ))),
        );
    }
    doc = doc.add(band);

    // Grid and ticks.
    let mut axes = Group::new().set("id", "ejes");
    for t in time.ticks() {
        let x = time.x(Duration::from_secs_f64(t));
        axes = axes
            .add(
                Line::new()
                    .set("class", "rejilla")
                    .set("x1", x)
                    .set("x2", x)
                    .set("y1", PLOT_TOP)
                    .set("y2", PLOT_BOTTOM),
            )
            .add(text(x, PLOT_BOTTOM + 16.0, "middle", tick_label(t)));
    }
    for v in latency.ticks() {
        let y = latency.y(v);
        axes = axes
            .add(
                Line::new()
                    .set("class", "rejilla")
                    .set("x1", LEFT)
                    .set("x2", RIGHT)
                    .set("y1", y)
                    .set("y2", y),
            )
            .add(text(LEFT - 6.0, y + 4.0, "end", tick_label(v)));
    }
    axes = axes
        .add(
            Path::new()
                .set("class", "eje")
                .set("fill", "none")
                .set("d", format!("M{LEFT} {PLOT_TOP}V{PLOT_BOTTOM}H{RIGHT}")),
        )
        .add(text(
            (LEFT + RIGHT) / 2.0,
            PLOT_BOTTOM + 36.0,
            "middle",
            "segundos desde el inicio (envío)",
        ))
        .add(
            text(0.0, 0.0, "middle", "latencia (ms, escala logarítmica)").set(
                "transform",
                format!(
                    "translate(24 {}) rotate(-90)",
                    px((PLOT_TOP + PLOT_BOTTOM) / 2.0)
                ),
            ),
        );
    doc = doc.add(axes);

    // The successes, one dot each: a zero-length segment with round caps, all in one path so a
    // long run stays a reasonable file.
    let mut dots = String::new();
    for s in chart.samples.iter().filter(|s| s.ok()) {
        dots.push_str(&format!(
            "M{} {}h0",
            time.x(s.offset),
            latency.y(millis(s.latency))
        ));
    }
    if !dots.is_empty() {
        doc = doc.add(
            Path::new()
                .set("id", "exitosas")
                .set("class", "ok")
                .set("d", dots),
        );
    }

    // The ASR line over the dots, so it is never hidden.
    let asr_y = latency.y(millis(ASR_LATENCY));
    doc = doc
        .add(
            Line::new()
                .set("id", "asr")
                .set("class", "asr")
                .set("x1", LEFT)
                .set("x2", RIGHT)
                .set("y1", asr_y)
                .set("y2", asr_y),
        )
        .add(
            text(
                RIGHT - 4.0,
                asr_y - 5.0,
                "end",
                format!("ASR: {} s", ASR_LATENCY.as_secs()),
            )
            .set("id", "asr-etiqueta")
            .set("fill", "#c0392b"),
        );

    // The legend.
    let mut legend = Group::new().set("id", "leyenda").add(
        Path::new()
            .set("class", "ok")
            .set("d", format!("M{} {}h0", LEFT, HEIGHT - 22.0)),
    );
    legend = legend.add(text(LEFT + 8.0, HEIGHT - 18.0, "start", "exitosa (2xx)"));
    let mut x = LEFT + 110.0;
    for kind in Kind::ALL {
        let label = format!("{} ({})", kind.short(), count(chart.samples, kind));
        legend = legend
            .add(
                Path::new()
                    .set("class", "fallo")
                    .set("stroke", colour(kind))
                    .set("d", format!("M{} {}l8 8m0 -8l-8 8", x, HEIGHT - 26.0)),
            )
            .add(text(x + 12.0, HEIGHT - 18.0, "start", label));
        x += 130.0;
    }
    doc.add(legend).to_string()
}

fn count(samples: &[Sample], kind: Kind) -> usize {
    samples
        .iter()
        .filter(|s| s.outcome.kind() == Some(kind))
        .count()
}

#[cfg(test)]
mod tests {
    use super::super::summarize;
    use super::super::tests::sample;
    use super::super::Outcome;
    use super::*;

    fn draw(url: &str, samples: &[Sample]) -> String {
        let plan = Plan::open(4.0, Duration::from_secs(3)).unwrap();
        let report = summarize(samples, 99.0);
        render(&Chart {
            url,
            plan: &plan,
            span: plan.duration().unwrap(),
            report: &report,
            samples,
        })
    }

    fn run() -> Vec<Sample> {
        vec![
            sample(0, 3, Outcome::Ok),
            sample(250, 40, Outcome::Ok),
            sample(500, 5000, Outcome::Timeout),
            sample(750, 2, Outcome::Status(503)),
            sample(1000, 2, Outcome::Status(503)),
            sample(1250, 2, Outcome::Status(404)),
            sample(1500, 1, Outcome::Refused),
            sample(1750, 1, Outcome::Connection),
            sample(2000, 2500, Outcome::Ok),
        ]
    }

    #[test]
    fn the_chart_is_xml_with_a_mark_per_failure_and_the_asr_line() {
        let svg = draw("http://127.0.0.1:3002/monitor?a=1&b=<2>", &run());
        let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );

        let by_id = |id: &str| {
            doc.descendants()
                .find(|n| n.attribute("id") == Some(id))
                .unwrap_or_else(|| panic!("no #{id} in {svg}"))
        };
        let asr = by_id("asr");
        assert_eq!(asr.tag_name().name(), "line");
        assert_eq!(asr.attribute("y1"), asr.attribute("y2"));
        // The svg crate puts a <text>'s content on a line of its own; SVG collapses that.
        assert_eq!(
            by_id("asr-etiqueta").text().map(str::trim),
            Some("ASR: 2 s")
        );

        let marks: Vec<_> = doc
            .descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("fallo "))
            })
            .collect();
        assert_eq!(marks.len(), 6);
        let kinds: Vec<_> = marks
            .iter()
            .map(|n| n.attribute("class").unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "fallo fallo-agotado",
                "fallo fallo-503",
                "fallo fallo-503",
                "fallo fallo-otro_http",
                "fallo fallo-rechazada",
                "fallo fallo-conexion",
            ]
        );
        // Each kind its own colour.
        let colours: std::collections::BTreeSet<_> = marks
            .iter()
            .map(|n| n.attribute("stroke").unwrap())
            .collect();
        assert_eq!(colours.len(), 5);
        // The first failure's tooltip says when and what.
        let tip = marks[0].first_element_child().unwrap();
        assert_eq!(tip.text(), Some("0.500 s: tiempo agotado, 5000.0 ms"));

        // Three successes, three dots.
        let dots = by_id("exitosas").attribute("d").unwrap();
        assert_eq!(dots.matches("h0").count(), 3);

        // The URL, escaped on the way in, reads back whole, with the verdict.
        let title = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("titulo"))
            .unwrap();
        assert_eq!(
            title.text().map(str::trim),
            Some(
                "http://127.0.0.1:3002/monitor?a=1&b=<2> · \
                 ASR (disponibilidad >= 99.00 %): NO CUMPLE"
            )
        );
        let texts: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for axis in [
            "segundos desde el inicio (envío)",
            "latencia (ms, escala logarítmica)",
        ] {
            assert!(texts.contains(&axis), "{axis} not in {texts:?}");
        }
        assert!(!svg.contains("<script"), "no script in a chart");
        assert!(!svg.contains("href"), "no external asset");
    }

    #[test]
    fn the_asr_line_sits_between_faster_and_slower_answers() {
        let svg = draw("http://x/", &run());
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let asr_y: f64 = doc
            .descendants()
            .find(|n| n.attribute("id") == Some("asr"))
            .and_then(|n| n.attribute("y1"))
            .unwrap()
            .parse()
            .unwrap();
        let dots = doc
            .descendants()
            .find(|n| n.attribute("id") == Some("exitosas"))
            .and_then(|n| n.attribute("d"))
            .unwrap();
        let ys: Vec<f64> = dots
            .split('M')
            .filter(|p| !p.is_empty())
            .map(|p| p.trim_end_matches("h0").split(' ').nth(1).unwrap())
            .map(|y| y.parse().unwrap())
            .collect();
        // 3 ms and 40 ms below the line (larger y), 2500 ms above it.
        assert!(
            ys[0] > asr_y && ys[1] > asr_y && ys[2] < asr_y,
            "{ys:?} vs {asr_y}"
        );
        assert!(ys[0] > ys[1], "slower is higher: {ys:?}");
    }

    #[test]
    fn axes_have_sensible_ticks() {
        let t = TimeAxis { span: 60.0 };
        assert_eq!(t.ticks(), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let t = TimeAxis { span: 3.0 };
        assert_eq!(t.step(), 0.5);
        let t = TimeAxis { span: 15.0 };
        assert_eq!(t.step(), 2.0);
        let l = LatencyAxis::new(&[sample(0, 3, Outcome::Ok)]);
        assert_eq!(l.ticks(), [1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(10.0), "10");
        assert_eq!(tick_label(0.01), "0.01");
        // A run with no samples still draws.
        let empty = draw("http://x/", &[]);
        roxmltree::Document::parse(&empty).unwrap();
    }
}
