//! Seeding through the real write side, in process.
//!
//! Accounts: the admin through `App::ensure_admin` (the bootstrap path);
//! employees through the Account aggregate (`WriteSide::account`), all with
//! one argon2id hash computed once, since hashing is not what is measured.
//! Tickets: the same steps as `App::create_ticket` (a data key per ticket,
//! title and description sealed under it, `TicketCommand::Open` through
//! cqrs-es) from many parallel tasks, without each waiting for its own
//! projection; the run then waits until the projector has caught up.
//! Updates: `TicketCommand::Update` through the write side.
//!
//! `remote.rs` does the same over GraphQL for `--target`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use api::state::AppState;
use chrono::Utc;
use commands::write::Actor;
use domain::account::AccountCommand;
use domain::sealed::SealedField;
use domain::ticket::{TicketCommand, TicketUpdate};
use domain::values::{Description, DisplayName, Email, Priority, Role, Status, TicketId, Title, UserId};
use projections::read::Table;
use secrecy::SecretString;
use uuid::Uuid;

use crate::config::PASSWORD;
use crate::driver::for_each_parallel;

/// A signed-up account of the run.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub id: Uuid,
}

/// Everything the scenarios act on.
#[derive(Debug)]
pub struct World {
    pub admin: Account,
    pub employees: Vec<Account>,
    /// Accounts only the login scenario signs in with.
    pub logins: Vec<Account>,
    /// Every seeded ticket and the index of its reporter in `employees`.
    pub tickets: Vec<(Uuid, usize)>,
    /// Tickets the update scenarios change, and how far each has got.
    pub updatable: Vec<(Uuid, AtomicU32)>,
    /// The ticket with a long history, and its step counter.
    pub long: Option<(Uuid, AtomicU32)>,
}

/// Access tokens, minted (in process) or signed in (remote) per scenario.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    pub employees: Vec<String>,
}

/// The change an update makes at `step`: it alternates status and
/// priority so every update changes something (OPEN/MEDIUM at creation).
pub fn change(step: u32) -> (Option<Status>, Option<Priority>) {
    match step % 4 {
        0 => (Some(Status::InProgress), None),
        1 => (None, Some(Priority::High)),
        2 => (Some(Status::Open), None),
        _ => (None, Some(Priority::Low)),
    }
}

pub fn employee_email(run: &str, i: usize) -> String {
    format!("bench-{run}-employee-{i}@example.com")
}

pub fn login_email(run: &str, i: usize) -> String {
    format!("bench-{run}-login-{i}@example.com")
}

pub fn ticket_text(i: usize) -> (String, String) {
    let title = format!("Bench ticket {i}: VPN drops every hour on the office Wi-Fi");
    let description = format!(
        "Since Monday the VPN client disconnects about every hour (case {i}). Reconnecting works, \
         but calls drop and unsaved work in the web tools is lost. Laptop model T14, Windows 11."
    );
    (title, description)
}

/// Creates the admin, `employees` employees and `logins` login accounts.
///
/// # Errors
/// When the write side or the projector fails.
pub async fn users(
    app: AppState,
    run: String,
    employees: usize,
    logins: usize,
    parallelism: usize,
) -> anyhow::Result<(Account, Vec<Account>, Vec<Account>)> {
    let admin_email = crate::config::ADMIN_EMAIL;
    let ensure = || app.ensure_admin(admin_email, "Bench Admin", SecretString::from(PASSWORD));
    let admin = match ensure().await {
        Ok(admin) => admin,
        // It waits 10 s for the projector, which any long transaction on the
        // same PostgreSQL server holds back: wait longer, then once more.
        Err(_) => {
            caught_up(app.clone()).await?;
            ensure().await.map_err(|e| anyhow!("bootstrap admin failed: {e:?}"))?
        }
    };
    let admin = Account { email: admin_email.to_owned(), id: admin.id };
    let hash = Arc::new(app.hasher.hash(SecretString::from(PASSWORD)).await?);
    let emails: Vec<String> =
        (0..employees).map(|i| employee_email(&run, i)).chain((0..logins).map(|i| login_email(&run, i))).collect();
    let emails = Arc::new(emails);
    let count = emails.len();
    let accounts = for_each_parallel(count, parallelism, move |i| {
        let (app, hash, emails) = (app.clone(), hash.clone(), emails.clone());
        async move {
            let email = Email::parse(&emails[i]).map_err(|e| anyhow!("{e}"))?;
            let id = UserId::for_email(&email);
            let command = AccountCommand::Register {
                email: email.clone(),
                display_name: DisplayName::parse(&format!("Bench user {i}")).map_err(|e| anyhow!("{e}"))?,
                password_hash: hash.as_str().to_owned(),
                role: Role::Employee,
            };
            let version = app.write.account(id, command, &Actor::system("bench-seed")).await?;
            app.projected(Table::Users, id.as_uuid(), version, false).await;
            Ok(Account { email: email.as_str().to_owned(), id: id.as_uuid() })
        }
    })
    .await?;
    let (employees, logins) = accounts.split_at(employees);
    Ok((admin, employees.to_vec(), logins.to_vec()))
}

/// Fresh access tokens for the admin and every employee.
///
/// # Errors
/// When signing fails.
pub fn mint(app: &AppState, world: &World) -> anyhow::Result<Tokens> {
    let token = |id: Uuid| app.jwt.issue_access(id, Utc::now()).map(|(token, _)| token).map_err(|e| anyhow!("{e:?}"));
    Ok(Tokens {
        admin: token(world.admin.id)?,
        employees: world.employees.iter().map(|e| token(e.id)).collect::<anyhow::Result<_>>()?,
    })
}

/// The actor seeding records on its events; the request id names the step.
pub fn actor(user: Uuid, role: Role, what: &str) -> Actor {
    Actor { user_id: Some(UserId::from_uuid(user)), role: Some(role), request_id: format!("bench-{what}") }
}

/// Opens one ticket the way `App::create_ticket` does, without waiting for
/// its projection.
///
/// # Errors
/// When the key store or the write side fails.
pub async fn open_ticket(app: &AppState, reporter: Uuid, i: usize) -> anyhow::Result<Uuid> {
    let (title, description) = ticket_text(i);
    let title = Title::parse(&title).map_err(|e| anyhow!("{e}"))?;
    let description = Description::parse(&description).map_err(|e| anyhow!("{e}"))?;
    let id = TicketId::from_uuid(Uuid::new_v4());
    let (key, wrapped) = app.keys.mint(id);
    let command = TicketCommand::Open {
        id,
        reporter: UserId::from_uuid(reporter),
        title: key.seal(id.as_uuid(), SealedField::Title, title.as_str()),
        description: key.seal(id.as_uuid(), SealedField::Description, description.as_str()),
        attachments: vec![],
    };
    app.write.open_ticket(id, wrapped, command, &actor(reporter, Role::Employee, "seed")).await?;
    Ok(id.as_uuid())
}

/// `count` tickets spread round-robin over the employees.
///
/// # Errors
/// When the write side fails.
pub async fn tickets(
    app: AppState,
    employees: Vec<Account>,
    count: usize,
    parallelism: usize,
) -> anyhow::Result<Vec<(Uuid, usize)>> {
    let employees = Arc::new(employees);
    for_each_parallel(count, parallelism, move |i| {
        let (app, employees) = (app.clone(), employees.clone());
        async move {
            let reporter = i % employees.len();
            Ok((open_ticket(&app, employees[reporter].id, i).await?, reporter))
        }
    })
    .await
}

/// Applies update `step` to `ticket` as the admin.
///
/// # Errors
/// When the write side refuses or fails.
pub async fn update(app: &AppState, admin: Uuid, ticket: Uuid, step: u32) -> anyhow::Result<u64> {
    let (status, priority) = change(step);
    let update = TicketUpdate { status, priority, ..TicketUpdate::default() };
    let command = TicketCommand::Update(update);
    Ok(app.write.ticket(TicketId::from_uuid(ticket), command, &actor(admin, Role::Admin, "seed")).await?)
}

/// One ticket with `events` events: opened, then updated one at a time.
///
/// # Errors
/// When the write side fails.
pub async fn long_history(app: AppState, admin: Uuid, reporter: Uuid, events: usize) -> anyhow::Result<(Uuid, u32)> {
    let id = open_ticket(&app, reporter, 0).await?;
    let steps = u32::try_from(events.saturating_sub(1)).context("--long-history is too large")?;
    for step in 0..steps {
        update(&app, admin, id, step).await?;
    }
    Ok((id, steps))
}

/// Waits until the projector has applied every event.
///
/// # Errors
/// When the store fails, or the projector makes no progress for a minute.
pub async fn caught_up(app: AppState) -> anyhow::Result<()> {
    let mut last = i64::MAX;
    let mut still = tokio::time::Instant::now();
    loop {
        let lag = app.read.lag().await?;
        if lag == 0 {
            return Ok(());
        }
        if lag < last {
            last = lag;
            still = tokio::time::Instant::now();
        } else if still.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the projector is stuck {lag} events behind");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The update pool: the first `count` tickets, each at step 0.
pub fn updatable(tickets: &[(Uuid, usize)], count: usize) -> Vec<(Uuid, AtomicU32)> {
    tickets.iter().take(count).map(|(id, _)| (*id, AtomicU32::new(0))).collect()
}

/// Picks the next step of ticket `index` of the pool.
pub fn next_step(pool: &[(Uuid, AtomicU32)], index: usize) -> (Uuid, u32) {
    let (id, step) = &pool[index % pool.len()];
    (*id, step.fetch_add(1, Ordering::Relaxed))
}
