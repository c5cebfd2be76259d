//! `kill -9` of the server in the middle of a mixed write load, round after
//! round on the same store: afterwards every acknowledged write is there
//! exactly once, and the read models the crashes left equal a rebuild of
//! them from zero.

use std::time::{Duration, Instant};

use rand::Rng as _;
use test_support::{Store, TestDb};

use crate::client::Api;
use crate::load::Load;
use crate::process::{Config, Server};
use crate::read_models::assert_equal_to_rebuild;
use crate::support::both_stores;

/// Writes acknowledged in a round before the kill may come.
const ACKED_PER_ROUND: usize = 30;
/// Clients writing at once.
const CLIENTS: usize = 4;

async fn killed_under_load(store: Store) {
    let started = Instant::now();
    let db = TestDb::new(store).await;
    let dir = tempfile::tempdir().expect("a temp folder");
    let config = Config::new(db.url.clone(), &dir.path().join("data"), &dir.path().join("logs"));
    let rounds = crate::rounds(6);

    let mut load = None;
    for _ in 0..rounds {
        let server = Server::start(&config).await;
        let api = Api::new(&server.base);
        let load = match &mut load {
            Some(load) => load,
            None => load.insert(Load::new(&api, CLIENTS).await),
        };
        let before = load.acked();
        let running = load.start(&api);
        // Kill once the round has written something, at a moment that
        // differs from round to round.
        let deadline = Instant::now() + Duration::from_secs(30);
        while load.acked() < before + ACKED_PER_ROUND && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..400))).await;
        server.kill().await;
        running.stop(load).await;
        assert!(load.acked() > before, "round wrote nothing before the kill");
    }
    let load = load.expect("at least one round");

    // Started again on the same store: everything acknowledged is there.
    let server = Server::start(&config).await;
    let api = Api::new(&server.base);
    let ledger = std::mem::take(&mut *load.ledger.lock().expect("the ledger"));
    let found = ledger.verify(&api, &load.admin).await;
    assert_eq!(found.total(), ledger.acked.len());
    // A killed request goes unanswered; none may be refused.
    ledger.assert_refusals_within(&[]);
    server.kill().await;
    let rows = assert_equal_to_rebuild(&db.db, &config).await;

    ledger.report(&format!("kill -9 ({store:?})"), rounds, &found, rows, started);
    db.cleanup().await;
}

both_stores!(killed_under_load);
