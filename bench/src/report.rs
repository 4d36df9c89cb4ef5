//! What the measurements produce and how it is shown: named figures, progress bars while they are
//! taken, and the closing table (ours, the seed's Python design, and how many times better ours is).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Which way a figure is better, for the ratio column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// A count shown for context (sample sizes): no ratio.
    Neither,
}

/// One measured number with its row label.
pub struct Figure {
    pub label: String,
    pub value: f64,
    pub better: Better,
    pub digits: usize,
}

impl Figure {
    fn new(label: impl Into<String>, value: f64, better: Better, digits: usize) -> Self {
        Figure {
            label: label.into(),
            value,
            better,
            digits,
        }
    }

    pub fn higher(label: impl Into<String>, value: f64, digits: usize) -> Self {
        Self::new(label, value, Better::Higher, digits)
    }

    pub fn lower(label: impl Into<String>, value: f64, digits: usize) -> Self {
        Self::new(label, value, Better::Lower, digits)
    }

    pub fn info(label: impl Into<String>, value: f64, digits: usize) -> Self {
        Self::new(label, value, Better::Neither, digits)
    }
}

pub fn bar(mp: &MultiProgress, len: usize, msg: String) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(len as u64));
    pb.set_style(
        ProgressStyle::with_template("{msg:52} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// A spinner for phases measured in time rather than in items.
pub fn phase(mp: &MultiProgress, msg: String) -> ProgressBar {
    let pb = mp.add(ProgressBar::new_spinner());
    pb.set_style(ProgressStyle::with_template("{msg:52} {spinner} {elapsed}").expect("template"));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb.set_message(msg);
    pb
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// p50, p95 and p99 rows (ms) of latency samples.
pub fn latency_figures(out: &mut Vec<Figure>, what: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    for p in [50.0, 95.0, 99.0] {
        out.push(Figure::lower(
            format!("{what} p{p} (ms)"),
            percentile(&samples, p),
            3,
        ));
    }
}

/// The Markdown table: one row per label, in the order the labels first appear.
pub fn print_table(ours: &[Figure], theirs: &[Figure], their_name: &str) {
    let mut labels: Vec<&str> = Vec::new();
    for f in ours.iter().chain(theirs) {
        if !labels.contains(&f.label.as_str()) {
            labels.push(&f.label);
        }
    }
    let find =
        |set: &'_ [Figure], label: &str| set.iter().find(|f| f.label == label).map(|f| f.value);
    let fmt = |v: Option<f64>, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "—".into(),
    };
    println!();
    println!("| figure | ours | {their_name} | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for label in labels {
        let any = ours
            .iter()
            .chain(theirs)
            .find(|f| f.label == label)
            .expect("a label comes from a figure");
        let (o, t) = (find(ours, label), find(theirs, label));
        let ratio = match (o, t, any.better) {
            (Some(o), Some(t), better)
                if better != Better::Neither
                    && o > 0.0
                    && t > 0.0
                    && o.is_finite()
                    && t.is_finite() =>
            {
                format!(
                    "{:.1}×",
                    if better == Better::Higher {
                        o / t
                    } else {
                        t / o
                    }
                )
            }
            _ => "—".into(),
        };
        println!(
            "| {label} | {} | {} | {ratio} |",
            fmt(o, any.digits),
            fmt(t, any.digits)
        );
    }
}

/// A Markdown table of one column per configuration of our own system (the parts that compare
/// deployments, not designs): one row per label, in the order the labels first appear.
pub fn print_columns(columns: &[(String, Vec<Figure>)]) {
    let mut labels: Vec<(&str, usize)> = Vec::new();
    for f in columns.iter().flat_map(|(_, fs)| fs) {
        if !labels.iter().any(|(l, _)| *l == f.label) {
            labels.push((&f.label, f.digits));
        }
    }
    println!();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    println!("| figure | {} |", names.join(" | "));
    println!("| --- |{}", " ---: |".repeat(names.len()));
    for (label, digits) in labels {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, fs)| match fs.iter().find(|f| f.label == label) {
                Some(f) if f.value.is_finite() => format!("{:.digits$}", f.value),
                _ => "—".into(),
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}
