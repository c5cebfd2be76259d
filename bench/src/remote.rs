//! Seeding a running server (`--target`) through GraphQL only: register,
//! login, createTicket and updateTicket, as any client would. Slower than
//! the in-process path, and every account costs one argon2id hash.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::{Config, PASSWORD};
use crate::driver::for_each_parallel;
use crate::gql::{Gql, CREATE, REGISTER, UPDATE};
use crate::seed::{change, employee_email, login_email, ticket_text, Account, Tokens, World};

/// Sign-ins and sign-ups are spread over this many source addresses.
const AUTH_ADDRESSES: usize = 16;

fn id_of(value: &Value) -> anyhow::Result<Uuid> {
    Uuid::parse_str(value.as_str().context("no id in the answer")?).context("the id is not a UUID")
}

/// Signs in the admin and registers the employees and login accounts.
///
/// # Errors
/// Bad admin credentials, throttling or a transport failure.
pub async fn users(base: &str, run: &str, config: &Config) -> anyhow::Result<(Account, Vec<Account>, Vec<Account>)> {
    let auth = Arc::new(Gql::spread(base, AUTH_ADDRESSES)?);
    let (_, admin_id) = auth[0].login(&config.admin_email, &config.admin_password).await.context("admin login")?;
    let admin = Account { email: config.admin_email.clone(), id: Uuid::parse_str(&admin_id)? };
    let emails: Vec<String> = (0..config.employees)
        .map(|i| employee_email(run, i))
        .chain((0..config.login_accounts).map(|i| login_email(run, i)))
        .collect();
    let emails = Arc::new(emails);
    let accounts = for_each_parallel(emails.len(), 4, move |i| {
        let (auth, emails) = (auth.clone(), emails.clone());
        async move {
            let variables = json!({ "e": emails[i], "p": PASSWORD, "n": format!("Bench user {i}") });
            let data = auth[i % auth.len()].data(None, REGISTER, variables).await?;
            Ok(Account { email: emails[i].clone(), id: id_of(&data["register"]["user"]["id"])? })
        }
    })
    .await?;
    let (employees, logins) = accounts.split_at(config.employees);
    Ok((admin, employees.to_vec(), logins.to_vec()))
}

/// Signs everyone in again (access tokens live 15 minutes).
///
/// # Errors
/// Throttling or a transport failure.
pub async fn tokens(base: &str, world: &World, admin_password: &str) -> anyhow::Result<Tokens> {
    let auth = Gql::spread(base, AUTH_ADDRESSES)?;
    let (admin, _) = auth[0].login(&world.admin.email, admin_password).await?;
    let mut employees = Vec::with_capacity(world.employees.len());
    for (i, employee) in world.employees.iter().enumerate() {
        employees.push(auth[(i + 1) % auth.len()].login(&employee.email, PASSWORD).await?.0);
    }
    Ok(Tokens { admin, employees })
}

/// `count` tickets through `createTicket`, round-robin over the employees.
///
/// # Errors
/// The first failed request.
pub async fn tickets(
    gql: &Gql,
    tokens: &Tokens,
    count: usize,
    parallelism: usize,
) -> anyhow::Result<Vec<(Uuid, usize)>> {
    let (gql, tokens) = (gql.clone(), Arc::new(tokens.clone()));
    for_each_parallel(count, parallelism, move |i| {
        let (gql, tokens) = (gql.clone(), tokens.clone());
        async move {
            let reporter = i % tokens.employees.len();
            let (title, description) = ticket_text(i);
            let data =
                gql.data(Some(&tokens.employees[reporter]), CREATE, json!({ "t": title, "d": description })).await?;
            Ok((id_of(&data["createTicket"]["id"])?, reporter))
        }
    })
    .await
}

/// Variables of update `step` on `ticket`.
pub fn update_variables(ticket: Uuid, step: u32) -> Value {
    let (status, priority) = change(step);
    json!({ "id": ticket, "s": status.map(|s| s.as_str()), "p": priority.map(|p| p.as_str()) })
}

/// One ticket with `events` events, through GraphQL.
///
/// # Errors
/// The first failed request.
pub async fn long_history(gql: &Gql, tokens: &Tokens, events: usize) -> anyhow::Result<(Uuid, u32)> {
    let (title, description) = ticket_text(0);
    let data = gql.data(Some(&tokens.employees[0]), CREATE, json!({ "t": title, "d": description })).await?;
    let id = id_of(&data["createTicket"]["id"])?;
    let steps = u32::try_from(events.saturating_sub(1))?;
    for step in 0..steps {
        gql.data(Some(&tokens.admin), UPDATE, update_variables(id, step)).await?;
    }
    Ok((id, steps))
}

/// Waits until `/readyz` reports no projector lag.
///
/// # Errors
/// When the server does not answer or stays behind for a minute.
pub async fn caught_up(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body: Value = client.get(format!("{base}/readyz")).send().await?.json().await?;
        if body["projector_lag"].as_i64() == Some(0) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the server's projector is still behind: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
