//! `Idempotency-Key` on `POST /graphql` (the IETF header's semantics): a
//! signed-in user's mutation sent again with the same key within 24 hours
//! answers its first outcome and changes nothing; the same key on another
//! request is `BAD_USER_INPUT`, and on the same request still running,
//! `CONFLICT`. The store keeps the key with the change it made
//! (`commands::idempotency`), so this holds across restarts and replicas.
//!
//! Sign-up and sign-in mutations (`register`, `login`, `refresh`,
//! `logout`) and anonymous callers run as without a key: their answers
//! carry tokens, which are never stored, and `register` cannot make a
//! second account anyway (an account's id comes from its email).
//! A request without the header costs nothing here but a map look-up.

use std::io::Read;
use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Request, Response, Value};
use axum::http::HeaderMap;
use commands::idempotency::{self, Found};
use sha2::{Digest, Sha256};

use super::spliced::Texts;
use super::TicketsSchema;
use crate::auth::caller::Viewer;
use crate::error::ApiError;
use crate::state::App;

/// The longest key taken.
const MAX_KEY_LEN: usize = 255;
/// Mutations whose answers hold tokens: never recorded (see the module doc).
const NOT_RECORDED: [&str; 4] = ["register", "login", "refresh", "logout"];

/// A header that is not a usable key.
#[derive(Debug, Clone, Copy)]
pub struct InvalidKey;

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII
/// characters, bare or as a structured-field string (`"…"`).
pub fn sent(headers: &HeaderMap) -> Option<Result<String, InvalidKey>> {
    let value = headers.get("idempotency-key")?;
    let bytes = value.as_bytes();
    let bytes = match bytes {
        [b'"', inner @ .., b'"'] => inner,
        bare => bare,
    };
    let visible = !bytes.is_empty() && bytes.len() <= MAX_KEY_LEN && bytes.iter().all(|b| b.is_ascii_graphic());
    Some(if visible { Ok(String::from_utf8_lossy(bytes).into_owned()) } else { Err(InvalidKey) })
}

fn refused(error: ApiError) -> Response {
    Response::from_errors(vec![async_graphql::Error::from(error).into_server_error(Default::default())])
}

/// A stored answer, as sent the first time.
fn stored(text: &str) -> Response {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut answer) => Response::new(Value::from_json(answer["data"].take()).unwrap_or(Value::Null)),
        Err(error) => refused(ApiError::internal(error)),
    }
}

/// Whether the request's key is recorded: only for a mutation of one field
/// that is not a sign-in. The document was parsed and measured before
/// (`limits::Documents::prepare`); one that does not parse runs, to be
/// refused by the schema.
fn recorded(request: &mut Request) -> Result<bool, ApiError> {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else { return Ok(false) };
    let operation = match (&document.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(_), None) => None,
    };
    let Some(operation) = operation.filter(|op| op.ty == OperationType::Mutation) else { return Ok(false) };
    let mut fields = Vec::new();
    for selection in &operation.selection_set.node.items {
        match &selection.node {
            Selection::Field(field) if field.node.name.node.starts_with("__") => {}
            Selection::Field(field) => fields.push(field.node.name.node.as_str()),
            _ => return Err(ApiError::BadInput("with an Idempotency-Key, name the mutation's field directly".into())),
        }
    }
    match fields.as_slice() {
        [field] => Ok(!NOT_RECORDED.contains(field)),
        [] => Ok(false),
        _ => Err(ApiError::BadInput("an Idempotency-Key covers one mutation field per request".into())),
    }
}

/// A digest of what the request asks: its document, operation, variables
/// and the bytes of each uploaded file.
async fn fingerprint(request: &Request) -> Result<String, ApiError> {
    let mut digest = Sha256::new();
    for part in [request.query.as_str(), request.operation_name.as_deref().unwrap_or_default()] {
        digest.update(part.len().to_le_bytes());
        digest.update(part.as_bytes());
    }
    digest.update(serde_json::to_vec(&request.variables).map_err(ApiError::internal)?);
    let files = request
        .uploads
        .iter()
        .map(|upload| upload.content.try_clone().map(|file| (upload.filename.clone(), file)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let files = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|(name, mut file)| {
                let mut digest = Sha256::new();
                digest.update(name.as_bytes());
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = file.read(&mut buffer)?;
                    if read == 0 {
                        return Ok(digest.finalize());
                    }
                    digest.update(&buffer[..read]);
                }
            })
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    for file in files {
        digest.update(file);
    }
    Ok(hex::encode(digest.finalize()))
}

/// Runs `request` on `schema`, under its `Idempotency-Key` when it has one
/// (`sent`, as [`sent`] read it) and a signed-in `viewer` sent it; `texts`
/// are the request's spliced answers, for the answer kept with the key.
pub async fn execute(
    app: &App,
    schema: &TicketsSchema,
    mut request: Request,
    sent: Option<Result<String, InvalidKey>>,
    viewer: Option<Viewer>,
    texts: &Texts,
) -> Response {
    let Some(sent) = sent else { return schema.execute(request).await };
    let Ok(key) = sent else {
        return refused(ApiError::BadInput(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    };
    let Some(viewer) = viewer else { return schema.execute(request).await };
    match recorded(&mut request) {
        Ok(true) => {}
        Ok(false) => return schema.execute(request).await,
        Err(error) => return refused(error),
    }
    let fingerprint = match fingerprint(&request).await {
        Ok(fingerprint) => fingerprint,
        Err(error) => return refused(error),
    };
    let db = app.write.db();
    let claim = match idempotency::claim(db, &viewer.id.to_string(), &key, &fingerprint).await {
        Ok(Found::Claimed(claim)) => Arc::new(claim),
        Ok(Found::Answered(text)) => return stored(&text),
        Ok(Found::Mismatch) => {
            return refused(ApiError::BadInput("this Idempotency-Key was used for another request".into()))
        }
        Ok(Found::InFlight) => {
            return refused(ApiError::Conflict(
                "a request with this Idempotency-Key is in progress; retry later".into(),
            ))
        }
        Err(error) => return refused(ApiError::internal(error)),
    };
    let response = idempotency::appending(Some(claim.clone()), schema.execute(request)).await;
    if response.is_err() {
        // Nothing changed: a retry runs afresh. A change that was made
        // (`COMMITTED_UNCONFIRMED`) keeps its key, and a retry answers it.
        if let Err(error) = idempotency::release(db, &claim).await {
            tracing::warn!(error = %error, "cannot release an idempotency key");
        }
        return response;
    }
    let text = match serde_json::to_string(&texts.splice(&response)) {
        Ok(text) => text,
        Err(error) => return refused(ApiError::internal(error)),
    };
    if let Err(error) = idempotency::answer(db, &claim, &text).await {
        // A retry then answers from the change the key recorded.
        tracing::warn!(error = %error, "cannot store an idempotent answer");
    }
    // Splicing took the request's texts, so the answer goes out as kept.
    stored(&text)
}
