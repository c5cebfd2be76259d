//! The report: one row per measurement, the seeding it needed, memory and
//! start-up figures, printed as a table and written as JSON.
//!
//! Every row names the reference it is compared with: writes with the
//! plain-SQL write transaction, reads with the plain-SQL page query, the
//! mixed load with the same 80/20 blend of both (a harmonic mean), the
//! rebuild with an ordered scan of the same events. The ratio is the row's
//! rate divided by the reference's rate at the same client count.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::Config;
use crate::cpu::Usage;
use crate::driver::Measured;
use crate::server::Memory;

pub const REF_WRITE: &str = "write transaction (SQL)";
pub const REF_PAGE: &str = "page query (SQL)";
pub const REF_SCAN: &str = "ordered event scan (SQL)";
/// Share of reads in the mixed scenario.
pub const MIXED_READS: f64 = 0.8;

/// What a row's rate is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    Nothing,
    Write,
    Read,
    Mixed,
    Scan,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub clients: usize,
    /// Successful requests (events, for the rebuild and the scan).
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub compared_with: Compare,
    pub ratio: Option<f64>,
    /// CPU of the server process per request, in ms.
    pub app_cpu_ms: Option<f64>,
    /// CPU of the `postgres` processes per request, in ms.
    pub pg_cpu_ms: Option<f64>,
    /// Share of the machine's cores busy with anything else, in percent.
    pub other_busy_pct: Option<f64>,
    /// Of `other_busy_pct`, the share the hypervisor took, in percent.
    pub steal_pct: Option<f64>,
    pub cpu: Option<Usage>,
    pub first_error: Option<String>,
}

fn ms(micros: u64) -> Option<f64> {
    Some(micros as f64 / 1000.0)
}

impl Row {
    /// A row from a closed-loop measurement; `class` picks one request
    /// class, `None` takes them all.
    pub fn measured(scenario: &str, case: &str, m: &Measured, class: Option<usize>, compare: Compare) -> Self {
        let hist: Histogram<u64> = match class {
            Some(class) => m.classes.get(class).cloned().unwrap_or_else(crate::driver::histogram),
            None => m.total(),
        };
        let count = hist.len();
        let some = count > 0;
        let latency =
            |quantile: Option<f64>| ms(quantile.map_or(hist.max(), |q| hist.value_at_quantile(q))).filter(|_| some);
        Self {
            errors: if class.is_some() { 0 } else { m.errors },
            p50_ms: latency(Some(0.50)),
            p90_ms: latency(Some(0.90)),
            p99_ms: latency(Some(0.99)),
            max_ms: latency(None),
            first_error: m.first_error.clone(),
            ..Self::throughput(scenario, case, m.clients, count, m.elapsed, compare)
        }
        .with_cpu(class.is_none().then_some(m.cpu))
    }

    /// Clears the CPU columns, for rows measured at the same time as others.
    pub fn without_cpu(mut self) -> Self {
        (self.app_cpu_ms, self.pg_cpu_ms, self.other_busy_pct, self.steal_pct, self.cpu) =
            (None, None, None, None, None);
        self
    }

    /// Fills the CPU columns from what was spent while this row ran.
    pub fn with_cpu(mut self, usage: Option<Usage>) -> Self {
        let Some(usage) = usage else { return self };
        let per = |seconds: f64| (self.requests > 0).then(|| seconds * 1000.0 / self.requests as f64);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        self.app_cpu_ms = per(usage.process_s);
        self.pg_cpu_ms = per(usage.postgres_s);
        let share = |seconds: f64| (usage.wall_s > 0.0).then(|| 100.0 * seconds / (cores * usage.wall_s));
        self.other_busy_pct = share(usage.other_s);
        self.steal_pct = share(usage.steal_s);
        self.cpu = Some(usage);
        self
    }

    /// A row with a rate but no per-request latencies.
    pub fn throughput(
        scenario: &str,
        case: &str,
        clients: usize,
        count: u64,
        took: Duration,
        compare: Compare,
    ) -> Self {
        let seconds = took.as_secs_f64().max(1e-9);
        Self {
            scenario: scenario.to_owned(),
            case: case.to_owned(),
            clients,
            requests: count,
            errors: 0,
            seconds,
            per_second: count as f64 / seconds,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            max_ms: None,
            compared_with: compare,
            ratio: None,
            app_cpu_ms: None,
            pg_cpu_ms: None,
            other_busy_pct: None,
            steal_pct: None,
            cpu: None,
            first_error: None,
        }
    }
}

/// Data the run had to create before measuring, and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Seeded {
    pub what: String,
    pub count: u64,
    pub seconds: f64,
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: Config,
    pub cores: usize,
    pub store_version: Option<String>,
    /// From starting the server process on the seeded store until its
    /// readiness check answered.
    pub startup_ms: Option<f64>,
    pub seeding: Vec<Seeded>,
    pub memory: Vec<Memory>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            store_version: None,
            startup_ms: None,
            seeding: Vec::new(),
            memory: Vec::new(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn seeded(&mut self, what: &str, count: usize, took: Duration, how: &str) {
        let seconds = took.as_secs_f64();
        self.seeding.push(Seeded { what: what.to_owned(), count: count as u64, seconds, how: how.to_owned() });
    }

    fn reference(&self, case: &str, clients: usize) -> Option<f64> {
        let refs = || self.rows.iter().filter(|r| r.scenario == "reference" && r.case == case && r.per_second > 0.0);
        refs().find(|r| r.clients == clients).or_else(|| refs().next()).map(|r| r.per_second)
    }

    /// Fills every row's ratio to its reference, where that was measured.
    pub fn fill_ratios(&mut self) {
        let ratios: Vec<Option<f64>> = self
            .rows
            .iter()
            .map(|row| {
                let reference = match row.compared_with {
                    Compare::Nothing => None,
                    Compare::Write => self.reference(REF_WRITE, row.clients),
                    Compare::Read => self.reference(REF_PAGE, row.clients),
                    Compare::Scan => self.reference(REF_SCAN, row.clients),
                    Compare::Mixed => {
                        let reads = self.reference(REF_PAGE, row.clients)?;
                        let writes = self.reference(REF_WRITE, row.clients)?;
                        Some(1.0 / (MIXED_READS / reads + (1.0 - MIXED_READS) / writes))
                    }
                };
                reference.map(|reference| row.per_second / reference)
            })
            .collect();
        for (row, ratio) in self.rows.iter_mut().zip(ratios) {
            row.ratio = ratio;
        }
    }

    /// The human-readable report: context lines, then the table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let mode = match c.target.as_deref() {
            Some(target) => format!("server at {target}"),
            None => format!("server process, {:?} store", c.store),
        };
        let _ = writeln!(out, "Tickets benchmark: {mode}, {} cores", self.cores);
        if let Some(version) = &self.store_version {
            let _ = writeln!(out, "store: {version}");
        }
        if let Some(startup) = self.startup_ms {
            let _ =
                writeln!(out, "start-up to ready (server process started, /readyz 200), seeded store: {startup:.0} ms");
        }
        for s in &self.seeding {
            let rate = s.count as f64 / s.seconds.max(1e-9);
            let _ = writeln!(out, "seeded {} {} in {:.1} s ({rate:.0}/s; {})", s.count, s.what, s.seconds, s.how);
        }
        for m in &self.memory {
            let _ = writeln!(out, "memory {}: VmRSS {} MiB, VmHWM {} MiB", m.at, m.rss_kib / 1024, m.peak_kib / 1024);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10} {:<38} {:>7} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>6}",
            "scenario",
            "case",
            "clients",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "vs ref",
            "app cpu",
            "pg cpu",
            "other",
            "steal"
        );
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let pct = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}%"));
        for r in &self.rows {
            let ratio = r.ratio.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(
                out,
                "{:<10} {:<38} {:>7} {:>9} {:>6} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>6}",
                r.scenario,
                r.case,
                r.clients,
                r.requests,
                r.errors,
                r.per_second,
                opt(r.p50_ms),
                opt(r.p90_ms),
                opt(r.p99_ms),
                opt(r.max_ms),
                ratio,
                r.app_cpu_ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
                r.pg_cpu_ms.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
                pct(r.other_busy_pct),
                pct(r.steal_pct)
            );
        }
        let _ = writeln!(
            out,
            "(app cpu, pg cpu: CPU ms per request of the server process and of PostgreSQL; other: cores busy elsewhere; \
             steal: of other, cores the hypervisor gave to other machines)"
        );
        for r in self.rows.iter().filter(|r| r.errors > 0) {
            let error = r.first_error.as_deref().unwrap_or("?");
            let _ = writeln!(out, "first error in {} / {}: {error}", r.scenario, r.case);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
