//! A small folder that really fills up: a tmpfs mounted for the test (we
//! run as root), a filler file written into it until the kernel says
//! `ENOSPC`, and removed again to give the space back. Dropping the guard
//! unmounts it, also when the test fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

pub struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB on a fresh temp folder.
    ///
    /// # Panics
    /// When mounting is not permitted (the trial needs root).
    pub fn mount(mib: u32) -> Self {
        let dir = tempfile::Builder::new().prefix("tickets-faults-disk-").tempdir().expect("a temp folder");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0755"), "tickets-faults"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(mounted.status.success(), "cannot mount a {mib} MiB tmpfs (this trial runs as root): {mounted:?}");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the disk is full; returns its size.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler()).expect("a filler file");
        let chunk = vec![0xA5_u8; 64 * 1024];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                Err(error) => panic!("filling the disk failed otherwise: {error}"),
            }
        }
        written
    }

    /// Removes the filler: the space is back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("the filler is removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted =
            Command::new("umount").arg(self.path()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a killed server's files not yet closed): detach it
            // now, the kernel frees it when the last file closes.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}
