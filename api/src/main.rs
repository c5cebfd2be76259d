//! `tickets`: the server and its administrative commands.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read};

use anyhow::Context;
use api::config::{Cli, Command, Settings};
use api::http::{assemble, Application};
use clap::Parser;
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let settings = Settings::from(cli.options);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Application::build(settings).await?.run_until_stopped().await,
        Command::Migrate => {
            commands::db::Db::connect(&settings.database_url).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin { email, display_name } => {
            let password = read_password()?;
            let (app, projector) = assemble(settings).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let running = tokio::spawn(projector.run(stopped));
            // After an interrupted rebuild the projector finishes it first,
            // so the admin's row is there to show.
            let whole = app.read_models_whole().await;
            let result = match whole {
                Ok(()) => app.ensure_admin(&email, &display_name, password).await,
                Err(error) => Err(error),
            };
            let _ = stop.send(true);
            let _ = running.await;
            let user = result.map_err(|e| anyhow::anyhow!("{}", e.describe()))?;
            println!("admin ready: {} ({})", user.email, user.id);
            Ok(())
        }
        Command::RebuildProjections => {
            let (_, projector) = assemble(settings).await?;
            let started = std::time::Instant::now();
            let events = projector.rebuild().await?;
            println!("rebuilt read models from {events} events in {:.1?}", started.elapsed());
            Ok(())
        }
        Command::RotateKeys => {
            let (app, _) = assemble(settings).await?;
            let count = app.keys.rotate().await?;
            println!("re-wrapped {count} data keys under the active master key");
            Ok(())
        }
    }
}

/// The admin password: prompted on a terminal, else the first line of stdin.
fn read_password() -> anyhow::Result<SecretString> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).context("cannot read the password from stdin")?;
        input.lines().next().unwrap_or_default().to_owned()
    };
    Ok(SecretString::from(password))
}
