//! Where the CPU went during a measurement, from `/proc`: the server's
//! process (the benchmark's own server process, or with `--target
//! --server-pid` that server; this process when none is watched), the
//! PostgreSQL backends serving the benchmark's database (recognised by the
//! database name in their process title; all `postgres` processes when no
//! name is known), and everything else on the machine: PostgreSQL's shared
//! background processes (WAL writer, checkpointer, autovacuum) and any other
//! work competing for the same cores, which makes a run noisy.
//!
//! Times are in USER_HZ ticks, which Linux fixes at 100 a second. A
//! backend that exits between two samples (the rebuild's leader connection
//! does) takes its ticks out of `/proc` with it, so a thread polls the
//! watched backends every `POLL` and keeps the last count of each one that
//! has gone: at most one poll's worth of an exiting backend is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

const TICKS_PER_SECOND: f64 = 100.0;

static DATABASE: OnceLock<String> = OnceLock::new();
/// The server process counted as the application; 0 for this process.
static SERVER: AtomicU32 = AtomicU32::new(0);
static BACKENDS: Mutex<Backends> = Mutex::new(Backends { live: None, exited: 0.0 });
const POLL: Duration = Duration::from_millis(200);

/// The watched backends' ticks: the live ones by pid, and the sum of the
/// last counts of those that exited.
struct Backends {
    live: Option<HashMap<u32, f64>>,
    exited: f64,
}

impl Backends {
    /// Takes a fresh reading of the live backends; returns all ticks so far.
    fn absorb(&mut self, now: HashMap<u32, f64>) -> f64 {
        for (pid, ticks) in self.live.take().unwrap_or_default() {
            if !now.contains_key(&pid) {
                self.exited += ticks;
            }
        }
        let total = self.exited + now.values().sum::<f64>();
        self.live = Some(now);
        total
    }
}

/// Counts process `pid` (the server) as the application's share, or this
/// process again with `None`.
pub fn watch_server(pid: Option<u32>) {
    SERVER.store(pid.unwrap_or(0), Ordering::Relaxed);
}

/// Counts only the backends of database `name` as PostgreSQL's share.
pub fn watch_database(name: &str) {
    if DATABASE.set(name.to_owned()).is_ok() {
        std::thread::spawn(|| loop {
            std::thread::sleep(POLL);
            if let (Some(name), Ok(mut backends)) = (DATABASE.get(), BACKENDS.lock()) {
                backends.absorb(watched_backends(name));
            }
        });
    }
}

/// CPU counters at one moment, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    process: f64,
    postgres: f64,
    machine: f64,
    steal: f64,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    pub wall_s: f64,
    pub process_s: f64,
    pub postgres_s: f64,
    /// Everything else busy, `steal_s` included.
    pub other_s: f64,
    /// Time the hypervisor ran something else on this machine's cores
    /// while they had work: a virtual machine's share of a busy host.
    pub steal_s: f64,
}

/// utime + stime of one `/proc/<pid>/stat`, and the command name.
fn process_ticks(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The benchmark database's backends only: with none watched (SQLite, or a
/// target without `--database-url`) every PostgreSQL process on the machine
/// is someone else's and counts as `other`.
fn postgres_ticks() -> f64 {
    let Some(name) = DATABASE.get() else { return 0.0 };
    BACKENDS.lock().map_or(0.0, |mut backends| backends.absorb(watched_backends(name)))
}

/// Ticks of each live `postgres` process whose title names database `name`.
fn watched_backends(name: &str) -> HashMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, path)| {
            std::fs::read(path.join("cmdline")).is_ok_and(|title| crate::gql::contains(&title, name.as_bytes()))
        })
        .filter_map(|(pid, path)| Some((pid, std::fs::read_to_string(path.join("stat")).ok()?)))
        .filter_map(|(pid, stat)| process_ticks(&stat).map(|(comm, ticks)| (pid, comm, ticks)))
        .filter(|(_, comm, _)| comm == "postgres")
        .map(|(pid, _, ticks)| (pid, ticks))
        .collect()
}

/// Busy ticks of all cores (everything but idle and iowait), and of them
/// the ticks stolen by the hypervisor.
fn machine_ticks() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0.0, 0.0) };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0.0, 0.0) };
    let values: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let get = |i: usize| values.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    (get(0) + get(1) + get(2) + get(5) + get(6) + get(7), get(7))
}

pub fn sample() -> Sample {
    let path = match SERVER.load(Ordering::Relaxed) {
        0 => "/proc/self/stat".to_owned(),
        pid => format!("/proc/{pid}/stat"),
    };
    let process =
        std::fs::read_to_string(path).ok().and_then(|stat| process_ticks(&stat)).map_or(0.0, |(_, ticks)| ticks);
    let (machine, steal) = machine_ticks();
    Sample {
        at: Instant::now(),
        process: process / TICKS_PER_SECOND,
        postgres: postgres_ticks() / TICKS_PER_SECOND,
        machine: machine / TICKS_PER_SECOND,
        steal: steal / TICKS_PER_SECOND,
    }
}

impl Sample {
    /// What was spent since this sample.
    pub fn usage(&self) -> Usage {
        let now = sample();
        let process_s = (now.process - self.process).max(0.0);
        let postgres_s = (now.postgres - self.postgres).max(0.0);
        let machine = (now.machine - self.machine).max(0.0);
        let other_s = (machine - process_s - postgres_s).max(0.0);
        Usage {
            wall_s: now.at.duration_since(self.at).as_secs_f64(),
            process_s,
            postgres_s,
            other_s,
            // Part of `other_s`: more only when the processes' ticks and
            // the machine's were counted a tick apart.
            steal_s: (now.steal - self.steal).clamp(0.0, other_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let stat = "42 (tokio worker) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(process_ticks(stat), Some(("tokio worker".to_owned(), 300.0)));
    }

    #[test]
    fn a_backend_that_exits_keeps_its_last_count() {
        let mut backends = Backends { live: None, exited: 0.0 };
        assert_eq!(backends.absorb(HashMap::from([(1, 5.0), (2, 3.0)])), 8.0);
        assert_eq!(backends.absorb(HashMap::from([(1, 7.0)])), 10.0, "pid 2's 3 ticks stay counted");
        assert_eq!(backends.absorb(HashMap::from([(1, 7.0), (3, 1.0)])), 11.0);
    }

    #[test]
    fn this_process_uses_cpu() {
        // Spin until the kernel has charged at least two clock ticks (a
        // tick is 10 ms here), however slow the machine.
        let before = sample();
        let mut x = 0u64;
        while before.usage().process_s < 0.02 && before.usage().wall_s < 10.0 {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let usage = before.usage();
        assert!(usage.wall_s > 0.0 && usage.process_s >= 0.02, "{usage:?}");
    }
}
