//! A GraphQL client for a server that may die or fail under it: every
//! request ends in an `Answer` rather than a panic, so a trial can count
//! what was acknowledged, what was refused with which code, and what got
//! no answer at all.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::Multipart;
use crate::support::{assert_no_leak, LOGIN, PASSWORD, REGISTER};

/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// What became of one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `data` without errors: the write is acknowledged.
    Ok(Value),
    /// A GraphQL error with this `extensions.code` (`"<none>"` when it had none).
    Refused { status: StatusCode, code: String, message: String },
    /// The connection failed or timed out: the outcome is unknown.
    Unanswered(String),
    /// An answer that is not GraphQL JSON: a defect wherever it happens.
    Malformed { status: StatusCode, body: String },
}

impl Answer {
    /// The `data` of an answer that must have succeeded.
    #[track_caller]
    pub fn data(self) -> Value {
        match self {
            Answer::Ok(data) => data,
            other => panic!("expected success: {other:?}"),
        }
    }
}

/// One server's GraphQL endpoint.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("an HTTP client");
        Self { http, base: base.to_owned() }
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Answer {
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.post(token, "application/json", body.into_bytes()).await
    }

    pub async fn multipart(&self, token: Option<&str>, request: Multipart) -> Answer {
        self.post(token, &request.content_type(), request.body).await
    }

    async fn post(&self, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Answer {
        let mut request =
            self.http.post(format!("{}/graphql", self.base)).header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => return Answer::Unanswered(error.to_string()),
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => return Answer::Unanswered(error.to_string()),
        };
        assert_no_leak(&text);
        let Ok(body) = serde_json::from_str::<Value>(&text) else {
            return Answer::Malformed { status, body: text };
        };
        match body.get("errors") {
            None if body["data"].is_object() => Answer::Ok(body["data"].clone()),
            None => Answer::Malformed { status, body: text },
            Some(errors) => Answer::Refused {
                status,
                code: errors[0]["extensions"]["code"].as_str().unwrap_or("<none>").to_owned(),
                message: errors[0]["message"].as_str().unwrap_or_default().to_owned(),
            },
        }
    }

    /// A GET's status and body, `None` when there was no answer.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Option<(StatusCode, bytes::Bytes)> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        Some((status, response.bytes().await.ok()?))
    }

    /// Registers an employee; returns its access token.
    pub async fn register(&self, email: &str) -> String {
        let answer = self.gql(None, REGISTER, json!({ "email": email, "password": PASSWORD, "name": "Load" })).await;
        answer.data()["register"]["accessToken"].as_str().expect("an access token").to_owned()
    }

    /// Signs in; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let answer = self.gql(None, LOGIN, json!({ "email": email, "password": password })).await;
        answer.data()["login"]["accessToken"].as_str().expect("an access token").to_owned()
    }
}
