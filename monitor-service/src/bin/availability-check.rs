//! availability-check: N concurrent clients each send M requests to a URL (by default the
//! monitor's `GET /monitor`), then the totals, availability, latency percentiles and whether
//! the ASR holds are printed. Exit status 0 when it holds, 1 when it does not, 2 on bad usage.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use monitor_service::availability::{summarize, Sample};

#[derive(Parser)]
#[command(
    version,
    about = "Measures the availability of an HTTP endpoint against an ASR"
)]
struct Args {
    /// The URL to request (GET). A 2xx answer is a success; anything else, or no answer within
    /// the timeout, a failure.
    #[arg(
        long,
        env = "CHECK_URL",
        default_value = "http://localhost:3002/monitor"
    )]
    url: String,
    /// Concurrent clients.
    #[arg(short = 'c', long, env = "CHECK_CLIENTS", default_value_t = 100)]
    clients: usize,
    /// Requests per client, one after another.
    #[arg(short = 'n', long, env = "CHECK_REQUESTS", default_value_t = 10)]
    requests: usize,
    /// The ASR: minimum availability, percent.
    #[arg(long, env = "CHECK_ASR", default_value_t = 99.0)]
    asr: f64,
    /// Per-request timeout, milliseconds.
    #[arg(long, env = "CHECK_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let total = args.clients * args.requests;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} solicitudes ({per_sec}, {eta})",
    )?);
    let url = Arc::new(args.url.clone());
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let (http, url, bar) = (http.clone(), url.clone(), bar.clone());
        let requests = args.requests;
        clients.spawn(async move {
            let mut samples = Vec::with_capacity(requests);
            for _ in 0..requests {
                let start = Instant::now();
                let ok = match http.get(url.as_str()).send().await {
                    // Read the whole body: a request counts once its answer has arrived.
                    Ok(response) => {
                        let ok = response.status().is_success();
                        response.bytes().await.is_ok() && ok
                    }
                    Err(_) => false,
                };
                samples.push(Sample {
                    ok,
                    latency: start.elapsed(),
                });
                bar.inc(1);
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(joined) = clients.join_next().await {
        samples.extend(joined?);
    }
    bar.finish_and_clear();
    let report = summarize(&samples, args.asr);
    println!(
        "URL: {} ({} clientes x {} solicitudes)",
        args.url, args.clients, args.requests
    );
    println!("{report}");
    Ok(if report.holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
