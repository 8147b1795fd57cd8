//! The engine of every `kafkube load …` command, so they all behave and report alike: run `n`
//! requests with at most `concurrency` in flight, show a progress bar, record each request's
//! latency in an HDR histogram, and summarise throughput and percentiles.
//!
//! A command supplies the request (`Fn(index) -> Future<Output = Result<units, error>>`, where
//! *units* is what the request carried — events in a batch, or 1) and its own checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
pub use indicatif::{ProgressBar, ProgressStyle};

/// What a `kafkube load …` command prints, and whether its checks passed (the exit code).
#[derive(Debug)]
pub struct LoadReport {
    pub text: String,
    pub ok: bool,
}

/// What a load run measured.
#[derive(Debug)]
pub struct Summary {
    pub requests: u64,
    pub units: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Request latency in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Summary {
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn units_per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> f64 {
        self.latency_us.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }

    /// `throughput …` and `latency …` lines; `unit` names what a unit is (e.g. "events").
    pub fn report(&self, unit: &str) -> String {
        let requests = if unit == "requests" {
            String::new()
        } else {
            format!(" ({:.0} requests/s)", self.requests_per_second())
        };
        let mut s = format!(
            "throughput {:.0} {unit}/s{requests} over {:.2}s\n\
             latency    p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
            self.units_per_second(),
            self.elapsed.as_secs_f64(),
            self.latency_ms(50.0),
            self.latency_ms(95.0),
            self.latency_ms(99.0),
            self.latency_us.max() as f64 / 1000.0,
        );
        for (e, n) in &self.errors {
            s += &format!("{n} request(s) failed: {e}\n");
        }
        s
    }
}

/// The progress bar every `kafkube load …` shows: `{label} {pos}/{len} [bar] {rate} {eta}`.
pub fn progress_bar(len: u64, label: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {label} {{pos}}/{{len}} [{{bar:30}}] {{per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    )
}

/// A latency histogram in microseconds: up to an hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid for an HDR histogram")
}

/// Runs `requests` requests, `concurrency` at a time. `progress_units` sizes the progress bar
/// (the total of the units the requests carry).
pub async fn run<F, Fut>(requests: u64, concurrency: usize, progress_units: u64, label: &str, request: F) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64, String>>,
{
    let bar = progress_bar(progress_units, label);
    let mut latency_us = latency_histogram();
    let mut errors = BTreeMap::new();
    let mut units = 0;
    let started = Instant::now();
    let mut results = futures::stream::iter(0..requests)
        .map(|i| {
            let fut = request(i);
            async move {
                let t = Instant::now();
                let r = fut.await;
                (r, t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((r, took)) = results.next().await {
        let _ = latency_us.record(took.as_micros().max(1) as u64);
        match r {
            Ok(n) => {
                units += n;
                bar.inc(n);
            }
            Err(e) => *errors.entry(e).or_insert(0) += 1,
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Summary {
        requests,
        units,
        errors,
        elapsed,
        latency_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_units_errors_and_latencies() {
        let s = run(10, 3, 20, "test", |i| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if i == 3 { Err("boom".to_owned()) } else { Ok(2) }
        })
        .await;
        assert_eq!((s.requests, s.units, s.failed()), (10, 18, 1));
        assert_eq!(s.errors.get("boom"), Some(&1));
        assert_eq!(s.latency_us.len(), 10);
        assert!(s.latency_ms(50.0) >= 2.0);
        assert!(s.report("events").contains("1 request(s) failed: boom"));
    }
}
