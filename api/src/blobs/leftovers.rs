//! Everything stored under the blob root, as the clean-up sees it: real
//! blobs and whatever else an interrupted write left there.
//!
//! `object_store`'s local store names a file being written `<name>#<n>` and
//! leaves such names out of its listings, so a process killed mid-write
//! leaves files it can never list. The local folder is therefore walked on
//! disk, not listed through the store.

use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

/// One stored file or object.
#[derive(Debug)]
pub struct Stored {
    /// Its name as the store would give it, `/`-separated.
    pub name: String,
    pub modified: SystemTime,
    pub place: Place,
}

/// Where a stored thing is, to remove it.
#[derive(Debug)]
pub enum Place {
    /// A file on disk (the local store, which cannot name partial files).
    File(PathBuf),
    /// An object in a bucket.
    Object(object_store::path::Path),
}

/// Every regular file under `dir`, named relative to `base`. A folder that
/// does not exist yet holds nothing.
///
/// # Errors
/// When a folder cannot be read.
pub fn walk(base: &FsPath, dir: &FsPath) -> anyhow::Result<Vec<Stored>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot list {}", folder.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
            // A file removed since the listing is simply gone.
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|meta| meta.modified()) {
                let relative = path.strip_prefix(base).unwrap_or(&path);
                let name = relative.components().map(|part| part.as_os_str().to_string_lossy()).collect::<Vec<_>>();
                found.push(Stored { name: name.join("/"), modified, place: Place::File(path) });
            }
        }
    }
    Ok(found)
}

/// Whether `name` is a SHA-256 digest as blobs are named: 64 lower-case
/// hexadecimal digits.
pub fn is_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_64_lower_hex_digits() {
        let digest = "a".repeat(64);
        assert!(is_digest(&digest));
        assert!(!is_digest(&format!("{digest}#1")));
        assert!(!is_digest(&"A".repeat(64)));
        assert!(!is_digest(&"a".repeat(63)));
        assert!(!is_digest("../../etc/passwd"));
    }

    #[test]
    fn walks_nested_files_including_staged_names() {
        let root = std::env::temp_dir().join(format!("blobs-walk-{}", uuid::Uuid::new_v4().simple()));
        let nested = root.join("sha256").join("ab").join("cd");
        std::fs::create_dir_all(&nested).expect("folders");
        std::fs::write(nested.join("abcd#1"), b"partial").expect("a staged file");
        let found = walk(&root, &root.join("sha256")).expect("walks");
        let names: Vec<_> = found.iter().map(|stored| stored.name.as_str()).collect();
        assert_eq!(names, ["sha256/ab/cd/abcd#1"]);
        assert!(walk(&root, &root.join("missing")).expect("walks").is_empty());
        std::fs::remove_dir_all(&root).expect("cleans up");
    }
}
