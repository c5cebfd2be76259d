//! Attachment bytes, content-addressed by SHA-256 in an `object_store`:
//! the local filesystem under the data folder by default, or an
//! S3-compatible bucket. Names people gave their files are never used here.
//!
//! A blob is durable when `put` returns: the local store syncs the file and
//! its folder (a bucket's PUT is durable by contract), so an event appended
//! afterwards never points at a file a power loss could take back.

mod leftovers;

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use projections::read::ReadModels;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::leftovers::{Place, Stored};

/// Where blobs live, under the store's root.
const PREFIX: &str = "sha256";

/// A blob's bytes as they stream out of the store.
pub type BlobStream = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The local store's folder, walked on disk by the clean-up.
    folder: Option<PathBuf>,
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
                // Synced file and folder before a write returns: the event
                // that refers to the blob is appended only afterwards.
                let store =
                    LocalFileSystem::new_with_prefix(&dir).context("cannot open the blob folder")?.with_fsync(true);
                Ok(Self { store: Arc::new(store), root: Path::from(PREFIX), folder: Some(dir) })
            }
            Some(url) => {
                let parsed = url::Url::parse(url).context("TICKETS_BLOB_STORE is not a URL")?;
                let options = options.iter().map(|(key, value)| (key.as_str(), value.as_str()));
                let (store, prefix) =
                    object_store::parse_url_opts(&parsed, options).context("TICKETS_BLOB_STORE is not usable")?;
                Ok(Self { store: Arc::from(store), root: prefix.join(PREFIX), folder: None })
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
        if let Err(error) = copy(&mut file, &mut writer).await {
            // A large file goes up in parts: abandon them rather than leave
            // an incomplete multipart upload behind.
            let _ = writer.abort().await;
            return Err(error).context("blob store write failed");
        }
        writer.shutdown().await.context("blob store write failed")
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

    /// Deletes what no attachment refers to and is older than `grace`:
    /// blobs of uploads whose event was never appended, and anything that
    /// is not a blob at all (the partial file of a write the process did not
    /// live to finish, a stray temporary file). Runs only when the projector
    /// has caught up, so every appended event is visible.
    ///
    /// # Errors
    /// When the store or the read models fail.
    pub async fn collect_garbage(&self, read: &ReadModels, grace: Duration) -> anyhow::Result<usize> {
        if read.lag().await? > 0 {
            return Ok(0);
        }
        let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for stored in self.stored().await? {
            if stored.modified >= cutoff {
                continue;
            }
            let removed_one = match self.blob_name(&stored.name) {
                Some(sha256) => self.remove_orphan(read, &sha256, cutoff).await?,
                None => self.remove_leftover(&stored).await?,
            };
            removed += usize::from(removed_one);
        }
        Ok(removed)
    }

    /// Everything under the root: walked on disk for the local store (whose
    /// listing hides partial files), listed for a bucket.
    async fn stored(&self) -> anyhow::Result<Vec<Stored>> {
        if let Some(folder) = self.folder.clone() {
            return tokio::task::spawn_blocking(move || leftovers::walk(&folder, &folder.join(PREFIX))).await?;
        }
        let listed: Vec<_> = self.store.list(Some(&self.root)).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|meta| Stored {
                name: meta.location.to_string(),
                modified: meta.last_modified.into(),
                place: Place::Object(meta.location),
            })
            .collect())
    }

    /// The digest `name` is the blob of, if it is one, where it belongs.
    fn blob_name(&self, name: &str) -> Option<String> {
        let digest = name.rsplit('/').next()?;
        (leftovers::is_digest(digest) && self.path(digest).as_ref() == name).then(|| digest.to_owned())
    }

    /// Deletes an unreferenced blob, unless an upload rewrote it or an
    /// event came to refer to it since it was listed.
    async fn remove_orphan(&self, read: &ReadModels, sha256: &str, cutoff: SystemTime) -> anyhow::Result<bool> {
        if read.blob_referenced(sha256).await? {
            return Ok(false);
        }
        let location = self.path(sha256);
        let still_old = self.store.head(&location).await.is_ok_and(|now| SystemTime::from(now.last_modified) < cutoff);
        if !still_old || read.lag().await? > 0 || read.blob_referenced(sha256).await? {
            return Ok(false);
        }
        self.store.delete(&location).await?;
        tracing::info!(sha256 = %sha256, "orphan blob removed");
        Ok(true)
    }

    /// Deletes something under the root that is not a blob.
    async fn remove_leftover(&self, stored: &Stored) -> anyhow::Result<bool> {
        match &stored.place {
            Place::File(file) => match tokio::fs::remove_file(file).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(error).with_context(|| format!("cannot remove {}", file.display())),
            },
            Place::Object(location) => self.store.delete(location).await?,
        }
        tracing::info!(name = %stored.name, "blob store leftover removed");
        Ok(true)
    }
}

/// Streams `file` into `writer`; the caller completes or aborts the write.
async fn copy(file: &mut tokio::fs::File, writer: &mut BufWriter) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        writer.write_all(&buffer[..read]).await?;
    }
    Ok(())
}
