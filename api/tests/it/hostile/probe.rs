//! One hostile request sent as raw HTTP/1.1 (so nothing normalises its
//! path or headers), its answer, and the judgement of that answer.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestApp, LEAKS};

/// Codes a client's mistake may earn.
pub const CLIENT: &[&str] = &[
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "TOO_MANY_REQUESTS",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
];
pub const BAD_INPUT: &[&str] = &["BAD_USER_INPUT"];
pub const UNAUTHENTICATED: &[&str] = &["UNAUTHENTICATED"];

/// Signs of internals beyond the shared list: source paths, backtraces,
/// store and library names.
const MORE_LEAKS: &[&str] =
    &[".rs:", "stack backtrace", "RUST_BACKTRACE", "object_store", "PoolTimedOut", "tickets-it-", "/tmp/"];

/// What a hostile request must get.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// A GraphQL error whose first code is one of these.
    Code(&'static [&'static str]),
    /// One of these HTTP statuses.
    Status(&'static [u16]),
    /// Served, or refused as the client's mistake: never a server error.
    Clean,
}

/// One hostile request, sent as raw HTTP/1.1 so nothing normalises it.
pub struct Probe {
    pub what: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: Expect,
}

impl Probe {
    pub fn new(what: impl Into<String>, method: &str, path: &str, expect: Expect) -> Self {
        Self {
            what: what.into(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            expect,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: Option<&str>) -> Self {
        match token {
            Some(token) => self.header("Authorization", &format!("Bearer {token}")),
            None => self,
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body POSTed to `/graphql`.
    pub fn json(what: impl Into<String>, token: Option<&str>, body: impl Into<Vec<u8>>, expect: Expect) -> Self {
        Self::new(what, "POST", "/graphql", expect).header("Content-Type", "application/json").bearer(token).body(body)
    }

    /// A GraphQL request with variables.
    pub fn gql(what: impl Into<String>, token: Option<&str>, query: &str, variables: Value, expect: Expect) -> Self {
        Self::json(what, token, json!({ "query": query, "variables": variables }).to_string(), expect)
    }
}

/// What came back.
pub struct Answer {
    status: u16,
    content_type: String,
    pub body: Vec<u8>,
}

pub async fn send(app: &TestApp, probe: &Probe) -> Result<Answer, String> {
    let authority = app.address().trim_start_matches("http://").to_owned();
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n", probe.method, probe.path);
    for (name, value) in &probe.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", probe.body.len()));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&probe.body).await?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await?;
        Ok::<_, std::io::Error>(received)
    };
    let received = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| format!("connection failed: {e}"))?;
    parse(&received)
}

fn parse(received: &[u8]) -> Result<Answer, String> {
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP head")?;
    let head = String::from_utf8_lossy(&received[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    let mut content_type = String::new();
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Err(format!("malformed header {line:?}")) };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => value.trim().clone_into(&mut content_type),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let raw = &received[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(Answer { status, content_type, body })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(raw.get(..size).ok_or("truncated chunk")?);
        raw = raw.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Everything wrong with `answer` to `probe`, if anything.
pub fn judge(probe: &Probe, answer: &Answer) -> Option<String> {
    if answer.status >= 500 {
        return Some(format!("server error {}", answer.status));
    }
    let text = String::from_utf8_lossy(&answer.body);
    let sent = String::from_utf8_lossy(&probe.body);
    // A pattern the request itself carries may come back as an echo.
    if let Some(leak) = LEAKS
        .iter()
        .chain(MORE_LEAKS)
        .find(|leak| text.contains(**leak) && !sent.contains(**leak) && !probe.path.contains(**leak))
    {
        return Some(format!("leaks {leak:?}"));
    }
    let code = if answer.content_type.starts_with("application/json") {
        let Ok(body) = serde_json::from_slice::<Value>(&answer.body) else {
            return Some("JSON that does not parse".into());
        };
        if let Some(errors) = body.get("errors") {
            let Some(errors) = errors.as_array().filter(|e| !e.is_empty()) else { return Some("empty errors".into()) };
            for error in errors {
                if !error["message"].is_string() {
                    return Some("an error without a message".into());
                }
                match error["extensions"]["code"].as_str() {
                    None => return Some("an error without a code".into()),
                    Some("INTERNAL") => return Some("INTERNAL".into()),
                    Some(_) => {}
                }
            }
        }
        body["errors"][0]["extensions"]["code"].as_str().map(str::to_owned)
    } else {
        None
    };
    match probe.expect {
        Expect::Code(codes) if !code.as_deref().is_some_and(|c| codes.contains(&c)) => {
            Some(format!("want one of {codes:?}, got {} {:?}", answer.status, code))
        }
        Expect::Status(statuses) if !statuses.contains(&answer.status) => {
            Some(format!("want status {statuses:?}, got {}", answer.status))
        }
        _ => None,
    }
}

pub async fn healthy(app: &TestApp) -> bool {
    let probe = Probe::new("healthz", "GET", "/healthz", Expect::Status(&[200]));
    tokio::time::timeout(Duration::from_secs(5), send(app, &probe))
        .await
        .is_ok_and(|answer| answer.is_ok_and(|a| a.status == 200 && a.body == b"ok"))
}
