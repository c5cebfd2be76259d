//! The GraphQL multipart request spec's body, read with a limit per part:
//! `operations` and `map` are JSON and get the JSON body's limit, only file
//! parts get the upload limit. async-graphql's own reader gives every part
//! the file limit (so a 9 MiB `operations` part was parsed) and asserts
//! when `operations` declares a multipart type; here `operations` is always
//! read as the JSON it must be, whatever type it declares.

use std::collections::HashMap;

use async_graphql::{ParseRequestError, Request, UploadValue};
use bytes::Bytes;
use futures_util::Stream;
use multer::{Constraints, Multipart, SizeLimit};
use tokio::io::AsyncWriteExt;

use crate::upload::MAX_JSON_BODY;

/// Limits of one multipart body.
pub struct Limits {
    /// Bytes per file part.
    pub file: u64,
    /// Bytes of the whole body.
    pub body: u64,
}

/// Reads a single GraphQL request from a multipart `body` whose parts are
/// separated by `boundary`; files go to temporary files as they arrive.
///
/// # Errors
/// `PayloadTooLarge` when a part or the body is over its limit; the others
/// when the body does not follow the spec.
pub async fn receive<S>(body: S, boundary: &str, limits: &Limits) -> Result<Request, ParseRequestError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let json = MAX_JSON_BODY as u64;
    let size = SizeLimit::new()
        .whole_stream(limits.body)
        .per_field(limits.file)
        .for_field("operations", json)
        .for_field("map", json);
    let mut multipart = Multipart::with_constraints(body, boundary, Constraints::new().size_limit(size));
    let mut request = None;
    let mut map = None;
    let mut files = Vec::new();
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("operations") => {
                let bytes = field.bytes().await?;
                let parsed = serde_json::from_slice::<Request>(&bytes)
                    .map_err(|error| ParseRequestError::InvalidRequest(Box::new(error)))?;
                request = Some(parsed);
            }
            Some("map") => {
                let bytes = field.bytes().await?;
                let parsed = serde_json::from_slice::<HashMap<String, Vec<String>>>(&bytes)
                    .map_err(|error| ParseRequestError::InvalidFilesMap(Box::new(error)))?;
                map = Some(parsed);
            }
            Some(name) => {
                let Some(filename) = field.file_name().map(str::to_owned) else { continue };
                let name = name.to_owned();
                let content_type = field.content_type().map(ToString::to_string);
                let content = to_temporary_file(field).await?;
                files.push((name, UploadValue { filename, content_type, content }));
            }
            None => {}
        }
    }
    let mut request = request.ok_or(ParseRequestError::MissingOperatorsPart)?;
    let mut map = map.ok_or(ParseRequestError::MissingMapPart)?;
    for (name, upload) in files {
        for path in map.remove(&name).unwrap_or_default() {
            request.set_upload(&path, upload.try_clone()?);
        }
    }
    if map.is_empty() {
        Ok(request)
    } else {
        Err(ParseRequestError::MissingFiles)
    }
}

/// Streams a file part to an unnamed temporary file, rewound for reading.
async fn to_temporary_file(mut field: multer::Field<'static>) -> Result<std::fs::File, ParseRequestError> {
    let mut file = tokio::fs::File::from_std(tempfile::tempfile()?);
    while let Some(chunk) = field.chunk().await? {
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let mut file = file.into_std().await;
    std::io::Seek::rewind(&mut file)?;
    Ok(file)
}
