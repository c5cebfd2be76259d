//! PostgreSQL stopped and started again (fast and immediate shutdowns in
//! turn) under a mixed write load: the server rides the outage out by
//! itself, is ready again and takes writes once the database is back, and
//! loses nothing it acknowledged.

use std::time::{Duration, Instant};

use commands::db::Db;
use reqwest::StatusCode;
use tokio::task::block_in_place;

use crate::client::Api;
use crate::cluster::{Cluster, Stop};
use crate::load::Load;
use crate::process::{Config, Server};
use crate::read_models::assert_equal_to_rebuild;

/// Writes acknowledged before each restart, and again after it.
const ACKED_PER_ROUND: usize = 20;
const CLIENTS: usize = 4;
/// How long the database stays away.
const OUTAGE: Duration = Duration::from_secs(1);
/// How long `/readyz` may take to answer, whatever the database does.
const PROBE: Duration = Duration::from_secs(5);
/// How long the server may take to notice the database is back.
const RECOVERY: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load() {
    let started = Instant::now();
    let cluster = block_in_place(Cluster::start);
    let dir = tempfile::tempdir().expect("a temp folder");
    let config = Config::new(cluster.url(), &dir.path().join("data"), &dir.path().join("logs"));
    let mut server = Server::start(&config).await;
    let api = Api::new(&server.base);
    let mut load = Load::new(&api, CLIENTS).await;
    let running = load.start(&api);
    let rounds = crate::rounds(4);
    let mut recoveries = Vec::new();
    for round in 0..rounds {
        let mode = if round % 2 == 0 { Stop::Fast } else { Stop::Immediate };
        wait_for_writes(&load, ACKED_PER_ROUND, "before the restart").await;
        block_in_place(|| cluster.stop(mode));
        tokio::time::sleep(OUTAGE).await;
        // A probe must learn at once that the server is not ready, not hang.
        let asked = Instant::now();
        let answer = api.get("/readyz", None).await;
        assert!(asked.elapsed() < PROBE, "/readyz took {:.1?} without a database", asked.elapsed());
        let (status, _) = answer.expect("the server answers while its database is away");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready without a database");
        block_in_place(|| cluster.start_again());
        let back = Instant::now();
        assert!(
            server.ready_within(RECOVERY).await,
            "not ready again after a {mode:?} restart:\n{}",
            server.log_tail()
        );
        wait_for_writes(&load, 1, "after the restart").await;
        recoveries.push(back.elapsed());
        assert!(server.alive(), "the server outlived the restart");
    }
    running.stop(&mut load).await;

    assert!(server.ready_within(RECOVERY).await, "ready at the end:\n{}", server.log_tail());
    let ledger = std::mem::take(&mut *load.ledger.lock().expect("the ledger"));
    let found = ledger.verify(&api, &load.admin).await;
    assert_eq!(found.total(), ledger.acked.len());
    // A write cut off by the outage fails as a server error, never as the
    // client's fault.
    ledger.assert_refusals_within(&["INTERNAL"]);
    server.kill().await;
    let db = Db::connect(&cluster.url()).await.expect("the trial's database");
    let rows = assert_equal_to_rebuild(&db, &config).await;
    db.close().await;

    println!("PostgreSQL restarts: back to ready and writing in {recoveries:.1?}");
    ledger.report("PostgreSQL restarts", rounds, &found, rows, started);
}

/// Waits until the clients have had `count` more writes acknowledged.
async fn wait_for_writes(load: &Load, count: usize, when: &str) {
    let target = load.acked() + count;
    let deadline = Instant::now() + RECOVERY;
    while load.acked() < target {
        assert!(Instant::now() < deadline, "no {count} writes acknowledged {when} within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
