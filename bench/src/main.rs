//! `bench`: see the library's documentation and BENCHMARKS.md.

use std::process::ExitCode;

use bench::child::{self, Role};
use bench::config::{Config, Options};
use clap::Parser;

/// The server processes this binary starts run on `tickets`'s allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Some(role) = Role::of_this_process() {
        return child::main(role);
    }
    let config = match Config::from_options(Options::parse()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json = config.json.clone();
    let report = match runtime.block_on(bench::run(config)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| std::fs::write(&path, bytes).map_err(anyhow::Error::from));
        if let Err(error) = written {
            eprintln!("bench: cannot write {}: {error:#}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
