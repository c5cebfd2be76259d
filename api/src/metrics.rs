//! Prometheus metrics at `GET /metrics`: GraphQL request counts and
//! latencies by outcome, and the projector's lag.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// One recorder per process; tests build several servers in one process.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness): then
        // metrics go there and this endpoint shows only what it renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Records one GraphQL request. Labels stay few and fixed: operation names
/// come from clients and would let anyone grow the metrics without bound.
pub fn record_request(started: Instant, failed: bool) {
    let labels = [("outcome", if failed { "error" } else { "ok" })];
    metrics::counter!("tickets_graphql_requests_total", &labels).increment(1);
    metrics::histogram!("tickets_graphql_request_seconds", &labels).record(started.elapsed().as_secs_f64());
}
