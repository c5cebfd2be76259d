//! The benchmark still works: `bench --tiny --scenario all` runs on both
//! stores and its table and JSON have a row for every scenario. Only the
//! shape is checked, never a speed: a slow machine must not fail this.
//!
//! PostgreSQL comes from `TICKETS_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), like the other tests; the
//! benchmark creates and drops its own database there.

use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 7] = ["reference", "create", "update", "read", "mixed", "login", "rebuild"];

fn run_tiny(store: &str) {
    let dir = std::env::temp_dir().join(format!("tickets-bench-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temp folder");
    let json = dir.join("report.json");
    let pg = std::env::var("TICKETS_TEST_PG").unwrap_or_else(|_| bench::config::DEFAULT_PG_URL.to_owned());
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--tiny", "--store", store, "--scenario", "all", "--pg-url", &pg, "--json"])
        .arg(&json)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --tiny failed on {store}:\n{stdout}\n{stderr}");

    for scenario in SCENARIOS {
        assert!(stdout.lines().any(|l| l.starts_with(scenario)), "no {scenario} row in the table:\n{stdout}");
    }
    assert!(stdout.contains("start-up to ready"), "no start-up time:\n{stdout}");
    assert!(stdout.contains("VmRSS"), "no memory figures:\n{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("valid JSON");
    let rows = report["rows"].as_array().expect("rows");
    for scenario in SCENARIOS {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["scenario"] == scenario).collect();
        assert!(!mine.is_empty(), "no {scenario} row in the JSON");
        for row in mine {
            assert!(row["requests"].as_u64().is_some_and(|n| n > 0), "{scenario} did nothing: {row}");
            assert_eq!(row["errors"].as_u64(), Some(0), "{scenario} had errors: {row}");
            assert!(row["per_second"].as_f64().is_some_and(|r| r > 0.0), "{scenario} has no rate: {row}");
        }
    }
    for row in rows.iter().filter(|r| r["compared_with"] != "nothing") {
        assert!(row["ratio"].is_number(), "a compared row has no ratio: {row}");
    }
    // The rebuild applied every event the reference scan read.
    let requests = |scenario: &str, case: &str| {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["case"].as_str().is_some_and(|c| c.contains(case)))
            .and_then(|r| r["requests"].as_u64())
    };
    assert_eq!(requests("rebuild", "rebuild"), requests("reference", "scan"), "the rebuild missed events");
    assert!(report["startup_ms"].is_number(), "no start-up time in the JSON");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tiny_run_on_sqlite_has_every_scenario() {
    run_tiny("sqlite");
}

#[test]
fn tiny_run_on_postgres_has_every_scenario() {
    run_tiny("postgres");
}
