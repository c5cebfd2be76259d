//! Evidence files: what is accepted, how it is checked, where it goes.
//!
//! The type is decided from the file's first bytes, never from its name or
//! declared type; the size is bounded while the request streams in; the
//! name is cleaned for display only. A blob is stored, durably, before its
//! `AttachmentAdded` event is appended, so no event points to a missing or
//! truncated file, even after a power loss.

use std::io::{Read, Seek, SeekFrom};

use async_graphql::UploadValue;
use commands::cipher::DataKey;
use commands::write::Actor;
use domain::sealed::SealedField;
use domain::ticket::{NewAttachment, TicketCommand, TicketEvent};
use domain::values::{AttachmentId, TicketId};
use projections::read::{AttachmentRow, Table};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::caller::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::state::App;

/// The most files one request may carry.
pub const MAX_FILES_PER_REQUEST: usize = 10;
/// The longest displayed file name, in characters.
const MAX_NAME_CHARS: usize = 120;

/// Stored blobs as sealed attachments, and the upload files kept until the
/// attachments are visible.
pub struct StoredEvidence {
    pub attachments: Vec<NewAttachment>,
    pub files: Vec<(String, std::fs::File)>,
}

/// An upload that passed every check, ready to store.
pub struct Evidence {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: &'static str,
    pub size: u64,
    pub sha256: String,
    file: std::fs::File,
}

/// A display name with no path, no control characters and a bounded length.
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| is_kept(*c)).collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let name: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    if name.is_empty() {
        "attachment".to_owned()
    } else {
        name
    }
}

/// Decides the type from the file's leading signature; `None` for anything
/// else. Exact signatures at offset 0 only: general sniffers also accept a
/// PDF marker anywhere in the first kilobyte or a bare `GIF`, which lets an
/// HTML page or a script through.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: [(&[u8], &str); 5] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (&[0xFF, 0xD8, 0xFF], "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
    ];
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)).map(|(_, kind)| *kind)
}

/// Characters that reorder or hide text: `invoice\u{202E}fdp.exe` would
/// display as `invoiceexe.pdf`.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn is_kept(c: char) -> bool {
    !c.is_control() && !is_invisible_or_bidi(c) && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':')
}

/// Checks one uploaded file: size, type from its bytes, digest.
fn inspect_file(mut file: std::fs::File, filename: &str, max_bytes: u64) -> ApiResult<Evidence> {
    let size = file.metadata().map_err(ApiError::internal)?.len();
    if size > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!("a file may be at most {max_bytes} bytes")));
    }
    if size == 0 {
        return Err(ApiError::BadInput("the file is empty".into()));
    }
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(8192);
    let mut buffer = vec![0u8; 64 * 1024];
    file.seek(SeekFrom::Start(0)).map_err(ApiError::internal)?;
    loop {
        let read = file.read(&mut buffer).map_err(ApiError::internal)?;
        if read == 0 {
            break;
        }
        if head.len() < 8192 {
            let take = read.min(8192 - head.len());
            head.extend_from_slice(&buffer[..take]);
        }
        hasher.update(&buffer[..read]);
    }
    file.seek(SeekFrom::Start(0)).map_err(ApiError::internal)?;
    let content_type = sniff(&head)
        .ok_or_else(|| ApiError::UnsupportedMediaType("only PNG, JPEG, GIF, WebP and PDF files are accepted".into()))?;
    Ok(Evidence {
        id: AttachmentId::from_uuid(Uuid::new_v4()),
        filename: sanitize_filename(filename),
        content_type,
        size,
        sha256: hex::encode(hasher.finalize()),
        file,
    })
}

impl App {
    /// Checks every upload before anything is stored, off the async runtime.
    ///
    /// # Errors
    /// `PAYLOAD_TOO_LARGE`, `UNSUPPORTED_MEDIA_TYPE` or `BAD_USER_INPUT`.
    pub async fn inspect_uploads(&self, uploads: Vec<UploadValue>) -> ApiResult<Vec<Evidence>> {
        if uploads.len() > MAX_FILES_PER_REQUEST {
            return Err(ApiError::PayloadTooLarge(format!("at most {MAX_FILES_PER_REQUEST} files per request")));
        }
        let max_bytes = self.settings.max_upload_bytes;
        tokio::task::spawn_blocking(move || {
            uploads.into_iter().map(|upload| inspect_file(upload.content, &upload.filename, max_bytes)).collect()
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Stores the blobs and turns the evidence into sealed attachments.
    ///
    /// # Errors
    /// When the blob store or the key ring fails.
    pub async fn store_evidence(&self, ticket: TicketId, evidence: Vec<Evidence>) -> ApiResult<StoredEvidence> {
        let Some(key) = self.keys.get(ticket).await? else {
            return Err(ApiError::BadInput("ticket's text has been erased".into()));
        };
        self.store_evidence_with(ticket, &key, evidence).await
    }

    /// As [`App::store_evidence`], with the ticket's key at hand (a ticket
    /// being opened, whose key is stored with its first events).
    ///
    /// # Errors
    /// When the blob store fails.
    pub async fn store_evidence_with(
        &self,
        ticket: TicketId,
        key: &DataKey,
        evidence: Vec<Evidence>,
    ) -> ApiResult<StoredEvidence> {
        let mut stored = StoredEvidence { attachments: Vec::with_capacity(evidence.len()), files: Vec::new() };
        for item in evidence {
            let copy = item.file.try_clone().map_err(ApiError::internal)?;
            self.blobs.put(&item.sha256, copy).await.map_err(ApiError::internal)?;
            stored.attachments.push(NewAttachment {
                id: item.id,
                filename: key.seal(ticket.as_uuid(), SealedField::AttachmentName, &item.filename),
                content_type: item.content_type.to_owned(),
                size: item.size,
                sha256: item.sha256.clone(),
            });
            stored.files.push((item.sha256, item.file));
        }
        Ok(stored)
    }

    /// Once the attachments are visible in the read model (so the clean-up
    /// spares them), makes sure each blob is still there: a clean-up that
    /// judged an identical old blob an orphan just before this upload
    /// rewrote it may have removed it. The upload's own file restores it.
    ///
    /// # Errors
    /// When the blob store fails.
    pub async fn confirm_evidence(&self, files: Vec<(String, std::fs::File)>) -> ApiResult<()> {
        for (sha256, file) in files {
            if !self.blobs.exists(&sha256).await {
                tracing::warn!(sha256 = %sha256, "blob vanished during upload; writing it again");
                self.blobs.put(&sha256, file).await.map_err(ApiError::internal)?;
            }
        }
        Ok(())
    }

    /// Adds one file to a ticket the caller may see.
    ///
    /// # Errors
    /// `NOT_FOUND` for a ticket the caller cannot see; the upload's errors.
    pub async fn add_attachment(
        &self,
        viewer: Viewer,
        ticket: &str,
        upload: UploadValue,
        actor: &Actor,
    ) -> ApiResult<AttachmentRow> {
        let ticket = self.visible_ticket(viewer, ticket).await?.ok_or(ApiError::NotFound("ticket"))?;
        if ticket.deleted_at.is_some() {
            return Err(ApiError::BadInput("ticket is deleted".into()));
        }
        let evidence = self.inspect_uploads(vec![upload]).await?;
        let mut added = AttachmentRow {
            id: evidence[0].id.as_uuid(),
            ticket_id: ticket.id,
            filename: evidence[0].filename.clone(),
            content_type: evidence[0].content_type.to_owned(),
            size: i64::try_from(evidence[0].size).unwrap_or(i64::MAX),
            sha256: evidence[0].sha256.clone(),
            uploaded_by: Some(viewer.id),
            uploaded_at: chrono::Utc::now(),
        };
        let ticket_id = TicketId::from_uuid(ticket.id);
        let mut stored = self.store_evidence(ticket_id, evidence).await?;
        let command = TicketCommand::AddAttachment(stored.attachments.remove(0));
        let landed = self.write.ticket_landed(ticket_id, command, actor).await?;
        // A retry of an addition already made (`Idempotency-Key`) lands
        // where the first did: its event names the attachment.
        if let Some(id) = landed.events.iter().find_map(|event| match event {
            TicketEvent::AttachmentAdded { id, .. } => Some(id.as_uuid()),
            _ => None,
        }) {
            added.id = id;
        }
        added.uploaded_at = landed.at;
        let visible = self.projected(Table::Tickets, ticket.id, landed.version, true).await;
        if visible {
            self.confirm_evidence(stored.files).await.map_err(ApiError::after_commit)?;
        }
        tracing::info!(ticket.id = %ticket.id, attachment.id = %added.id, "attachment added");
        // The event is durable: a failed read back answers what was added.
        let read_back = if visible { self.read.attachment(added.id).await.ok().flatten() } else { None };
        Ok(read_back.unwrap_or(added))
    }

    /// The attachment and its ticket if the caller may download it: the
    /// ticket's own rules, and deleted tickets' files for admins only.
    ///
    /// # Errors
    /// Store failures; anything not visible is `None`.
    pub async fn visible_attachment(&self, viewer: Viewer, id: &str) -> ApiResult<Option<AttachmentRow>> {
        let Ok(id) = Uuid::parse_str(id) else { return Ok(None) };
        let Some(attachment) = self.read.attachment(id).await? else { return Ok(None) };
        let visible = self.visible_ticket(viewer, &attachment.ticket_id.to_string()).await?.is_some();
        Ok(visible.then_some(attachment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_controls_and_length() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\x\\shot.png"), "shot.png");
        assert_eq!(sanitize_filename("a\u{0}b\nc.pdf"), "abc.pdf");
        assert_eq!(sanitize_filename("..."), "attachment");
        assert_eq!(sanitize_filename(".hidden.png"), "hidden.png");
        assert_eq!(sanitize_filename(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
        assert_eq!(sanitize_filename("\"quoted\".png"), "quoted.png");
        assert_eq!(sanitize_filename("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x1a\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"<!DOCTYPE html><script>alert(1)</script>"), None);
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf /"), None);
        assert_eq!(sniff(b"PK\x03\x04zip"), None);
        assert_eq!(sniff(b"<html>%PDF-1.4</html>"), None);
        assert_eq!(sniff(b"GIF<script>"), None);
        assert_eq!(sniff(b"12345678WEBPxxxx"), None);
    }
}
