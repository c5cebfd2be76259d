//! Attachment bytes, content-addressed by SHA-256 in an `object_store`:
//! the local filesystem under the data folder by default, or an
//! S3-compatible bucket. Names people gave their files are never used here.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use projections::read::ReadModels;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where blobs live, under the store's root.
const PREFIX: &str = "sha256";

/// A blob's bytes as they stream out of the store.
pub type BlobStream = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl Blobs {
    /// `url` is `file` (default: `<data dir>/blobs`) or `s3://bucket/prefix`,
    /// configured by the usual `AWS_*` variables (`AWS_ENDPOINT` for
    /// S3-compatible services, `AWS_ALLOW_HTTP=true` for plain HTTP).
    ///
    /// # Errors
    /// When the folder cannot be created or the URL is not understood.
    pub fn open(url: Option<&str>, data_dir: &FsPath, options: &[(String, String)]) -> anyhow::Result<Self> {
        match url.filter(|u| !u.is_empty() && *u != "file") {
            None => {
                let dir = data_dir.join("blobs");
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                // Evidence is for the service's eyes: nobody else may list or read it.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                        .with_context(|| format!("cannot restrict {}", dir.display()))?;
                }
                let store = LocalFileSystem::new_with_prefix(&dir).context("cannot open the blob folder")?;
                Ok(Self { store: Arc::new(store), root: Path::from(PREFIX) })
            }
            Some(url) => {
                let parsed = url::Url::parse(url).context("TICKETS_BLOB_STORE is not a URL")?;
                let options = options.iter().map(|(key, value)| (key.as_str(), value.as_str()));
                let (store, prefix) =
                    object_store::parse_url_opts(&parsed, options).context("TICKETS_BLOB_STORE is not usable")?;
                Ok(Self { store: Arc::from(store), root: prefix.join(PREFIX) })
            }
        }
    }

    fn path(&self, sha256: &str) -> Path {
        let (a, b) = (sha256.get(..2).unwrap_or("00"), sha256.get(2..4).unwrap_or("00"));
        self.root.clone().join(a).join(b).join(sha256)
    }

    /// Streams `file` into the blob named by its digest. Written even when
    /// present, which refreshes its age so a concurrent clean-up spares it.
    ///
    /// # Errors
    /// When reading the file or writing the store fails.
    pub async fn put(&self, sha256: &str, file: std::fs::File) -> anyhow::Result<()> {
        let mut file = tokio::fs::File::from_std(file);
        // Clones of one upload (a part mapped to several variables) share an offset.
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(0)).await?;
        let mut writer = BufWriter::new(self.store.clone(), self.path(sha256));
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            writer.write_all(&buffer[..read]).await?;
        }
        writer.shutdown().await.context("blob store write failed")?;
        Ok(())
    }

    /// The bytes of `range` (or all) of a blob.
    ///
    /// # Errors
    /// When the blob is missing or the store fails.
    pub async fn get(&self, sha256: &str, range: Option<Range<u64>>) -> anyhow::Result<BlobStream> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&self.path(sha256), options).await?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// Whether the blob is stored.
    pub async fn exists(&self, sha256: &str) -> bool {
        self.store.head(&self.path(sha256)).await.is_ok()
    }

    /// Deletes blobs no attachment refers to and older than `grace`: the
    /// leftovers of uploads whose event was never appended. Runs only when
    /// the projector has caught up, so every appended event is visible.
    ///
    /// # Errors
    /// When the store or the read models fail.
    pub async fn collect_garbage(&self, read: &ReadModels, grace: Duration) -> anyhow::Result<usize> {
        if read.lag().await? > 0 {
            return Ok(0);
        }
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let mut listed = self.store.list(Some(&self.root));
        let mut removed = 0;
        while let Some(meta) = listed.next().await {
            let meta = meta?;
            let Some(sha256) = meta.location.filename().map(str::to_owned) else { continue };
            if meta.last_modified >= cutoff || read.blob_referenced(&sha256).await? {
                continue;
            }
            // An upload may have rewritten it since the listing: look again.
            let still_old = self.store.head(&meta.location).await.is_ok_and(|now| now.last_modified < cutoff);
            if still_old && read.lag().await? == 0 && !read.blob_referenced(&sha256).await? {
                self.store.delete(&meta.location).await?;
                tracing::info!(sha256 = %sha256, "orphan blob removed");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
