//! The closed loop: `clients` tasks each send one request, wait for the
//! answer, and send the next, until the duration is over or the request
//! budget is spent. Latencies go into HDR histograms (microseconds), one per
//! request class (e.g. reads and writes of the mixed scenario), merged
//! across clients at the end. Failed requests are counted, not timed.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cpu::{self, Usage};

/// When a measurement stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Duration(Duration),
    /// Total requests across all clients.
    Requests(u64),
}

/// What one measurement saw.
#[derive(Debug, Clone)]
pub struct Measured {
    pub clients: usize,
    /// One histogram per request class, in microseconds.
    pub classes: Vec<Histogram<u64>>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU spent during the measurement (warm-up excluded).
    pub cpu: Usage,
}

impl Measured {
    /// All classes together.
    pub fn total(&self) -> Histogram<u64> {
        let mut all = histogram();
        for class in &self.classes {
            let _ = all.add(class);
        }
        all
    }
}

/// Microseconds from 1 µs to one hour, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `op` in a closed loop after an unmeasured warm-up. `op(client, n)`
/// gets the client's index and a run-wide request number, and answers the
/// class of the request it made, or why it failed.
pub async fn closed_loop<F, Fut>(clients: usize, limit: Limit, warmup: Duration, classes: usize, op: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<usize, String>> + Send + 'static,
{
    let op = Arc::new(op);
    if !warmup.is_zero() {
        phase(clients, Limit::Duration(warmup), classes, op.clone()).await;
    }
    phase(clients, limit, classes, op).await
}

async fn phase<F, Fut>(clients: usize, limit: Limit, classes: usize, op: Arc<F>) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<usize, String>> + Send + 'static,
{
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu::sample();
    let started = Instant::now();
    let (deadline, budget) = match limit {
        Limit::Duration(duration) => (Some(started + duration), u64::MAX),
        Limit::Requests(requests) => (None, requests),
    };
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let op = op.clone();
        let issued = issued.clone();
        tasks.spawn(async move {
            let mut hists = vec![histogram(); classes.max(1)];
            let mut errors = 0;
            let mut first_error = None;
            loop {
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= budget {
                    break;
                }
                let sent = Instant::now();
                match op(client, n).await {
                    Ok(class) => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let index = class.min(hists.len() - 1);
                        hists[index].saturating_record(micros.max(1));
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (hists, errors, first_error)
        });
    }
    let mut merged = Measured {
        clients,
        classes: vec![histogram(); classes.max(1)],
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        cpu: Usage::default(),
    };
    while let Some(joined) = tasks.join_next().await {
        let Ok((hists, errors, first_error)) = joined else {
            merged.errors += 1;
            merged.first_error.get_or_insert_with(|| "a client task panicked".to_owned());
            continue;
        };
        for (into, from) in merged.classes.iter_mut().zip(&hists) {
            let _ = into.add(from);
        }
        merged.errors += errors;
        if merged.first_error.is_none() {
            merged.first_error = first_error;
        }
    }
    merged.elapsed = started.elapsed();
    merged.cpu = cpu_before.usage();
    merged
}

/// Runs `work(i)` for `i in 0..count` with at most `parallelism` at once;
/// stops at the first error.
///
/// # Errors
/// The first error any `work` returned.
pub async fn for_each_parallel<F, Fut, T>(count: usize, parallelism: usize, work: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..parallelism.max(1) {
        let work = work.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                if i >= count {
                    return anyhow::Ok(done);
                }
                done.push((i, work(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}
