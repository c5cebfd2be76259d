//! GraphQL over HTTP: one keep-alive `reqwest` client per source address,
//! and the documents the scenarios send.
//!
//! The load itself goes through one client (one connection pool). Sign-ins
//! are throttled per client address (60 a minute) and per email (10 a
//! minute), so the login scenario and remote seeding spread their auth
//! calls over clients bound to other loopback addresses (127.0.0.x).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub const CREATE: &str = "mutation($t: String!, $d: String!) { createTicket(input: {title: $t, description: $d}) \
    { id version status } }";
pub const UPDATE: &str = "mutation($id: ID!, $s: TicketStatus, $p: Priority) \
    { updateTicket(id: $id, input: {status: $s, priority: $p}) { id version status priority } }";
pub const DETAIL: &str = "query($id: ID!) { ticket(id: $id) { id title description status priority createdAt \
    updatedAt version reporter { id displayName } assignee { id displayName } attachments { id filename } \
    history { sequence at action field from to actor { displayName } } } }";
pub const PAGE: &str = "query($s: TicketStatus) { tickets(first: 50, filter: {status: $s}) { edges { cursor \
    node { id title status priority createdAt updatedAt version } } pageInfo { hasNextPage endCursor } } }";
pub const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) \
    { accessToken user { id } } }";
pub const REGISTER: &str = "mutation($e: String!, $p: String!, $n: String!) \
    { register(input: {email: $e, password: $p, displayName: $n}) { accessToken user { id } } }";

/// Refuses targets off this machine: the benchmark only loads loopback.
///
/// # Errors
/// When `target` is not an `http://` URL on a loopback host.
pub fn check_loopback(target: &str) -> anyhow::Result<()> {
    let rest = target.strip_prefix("http://").context("--target must be an http:// URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--target must be a loopback address (127.0.0.0/8, ::1 or localhost), not {host:?}");
    }
    Ok(())
}

/// A GraphQL endpoint reached through one connection pool.
#[derive(Clone)]
pub struct Gql {
    client: reqwest::Client,
    url: String,
}

impl Gql {
    /// `base` is e.g. `http://127.0.0.1:8080`; `local` binds the source address.
    ///
    /// # Errors
    /// When the client cannot be built.
    pub fn new(base: &str, local: Option<IpAddr>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .local_address(local)
            .build()?;
        Ok(Self { client, url: format!("{base}/graphql") })
    }

    /// `count` clients on distinct loopback source addresses when `base` is
    /// on 127.0.0.0/8, else `count` plain clients.
    ///
    /// # Errors
    /// When a client cannot be built.
    pub fn spread(base: &str, count: usize) -> anyhow::Result<Vec<Self>> {
        let v4 = base.contains("://127.") || base.contains("://localhost");
        (0..count.max(1))
            .map(|i| {
                let octet = u8::try_from(10 + i % 240).unwrap_or(10);
                let local = v4.then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)));
                Self::new(base, local)
            })
            .collect()
    }

    /// Sends one request; an HTTP error or a GraphQL `errors` entry fails.
    /// The body is only scanned, not parsed, to keep the client cheap.
    ///
    /// # Errors
    /// The transport error, status or the start of the error body.
    pub async fn send(&self, token: Option<&str>, query: &str, variables: Value) -> Result<usize, String> {
        let mut request = self.client.post(&self.url).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("body failed: {e}"))?;
        if !status.is_success() || contains(&body, b"\"errors\":") {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(format!("HTTP {status}: {text}"));
        }
        Ok(body.len())
    }

    /// Sends one request and answers its `data`.
    ///
    /// # Errors
    /// As [`Gql::send`], or when the body is not JSON.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut request = self.client.post(&self.url).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut body: Value = request.send().await?.json().await?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].take())
    }

    /// Signs in; answers the access token and the user's id.
    ///
    /// # Errors
    /// Bad credentials, throttling, or a transport failure.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<(String, String)> {
        let data = self.data(None, LOGIN, json!({ "e": email, "p": password })).await?;
        let token = data["login"]["accessToken"].as_str().context("no access token")?;
        let id = data["login"]["user"]["id"].as_str().context("no user id")?;
        Ok((token.to_owned(), id.to_owned()))
    }
}

/// Whether `needle` (not empty) occurs in `haystack`; cheap for the client:
/// the byte-window scan it replaced was the largest single item in a read's
/// profile.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080", "http://127.1.2.3"] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1:8080", "https://127.0.0.1", "http://example.com", "127.0.0.1:8080"] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies_are_recognised() {
        assert!(contains(br#"{"data":null,"errors":[{"message":"x"}]}"#, b"\"errors\":"));
        assert!(!contains(br#"{"data":{"title":"errors: \"x\""}}"#, b"\"errors\":"));
    }
}
