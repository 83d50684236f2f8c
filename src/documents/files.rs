//! Uploaded files, stored once by content: `<files_dir>/<sha[0..2]>/<sha256>`.
//!
//! A file is written to a temporary name while it streams in (hashed on the way, never
//! held whole in memory), checked against the size limit as it grows, then renamed into
//! place: a reader only ever sees complete files, and a crash leaves at most a
//! temporary file that the next start removes.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file received and stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// sha256, lower-case hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Its first bytes (for format detection).
    pub head: Vec<u8>,
}

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Larger than allowed.
    #[error("the file is larger than the limit of {limit} bytes (documents.max_file_bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The disk failed (details are logged).
    #[error("storing the file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A file being received.
pub struct Incoming {
    temp: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
    limit: u64,
    head: Vec<u8>,
    dir: PathBuf,
}

impl Incoming {
    /// Starts receiving a file into `dir` (blocking: call from a blocking context).
    pub fn start(dir: &Path, limit: u64) -> Result<Incoming, FileError> {
        let tmp = dir.join("tmp");
        fs_err::create_dir_all(&tmp)?;
        let temp = tmp.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = fs_err::File::create(&temp)?.into_parts().0;
        Ok(Incoming {
            temp,
            file,
            hasher: Sha256::new(),
            size: 0,
            limit,
            head: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        if self.head.len() < 4096 {
            let take = (4096 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes)?;
        Ok(())
    }

    /// Completes the file: flushes it to disk and moves it to its content address.
    pub fn finish(mut self) -> Result<Stored, FileError> {
        if self.size == 0 {
            return Err(FileError::Empty);
        }
        self.file.sync_all()?;
        let sha256 = hex(&std::mem::take(&mut self.hasher).finalize());
        let target = path(&self.dir, &sha256);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        // Same content already stored: keep the existing file.
        if target.exists() {
            let _ = fs_err::remove_file(&self.temp);
        } else {
            fs_err::rename(&self.temp, &target)?;
        }
        self.temp = PathBuf::new();
        Ok(Stored {
            sha256,
            size: self.size,
            head: std::mem::take(&mut self.head),
        })
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs_err::remove_file(&self.temp);
        }
    }
}

use crate::hashing::hex;

/// Where the file with this digest lives.
pub fn path(dir: &Path, sha256: &str) -> PathBuf {
    let prefix = sha256.get(..2).unwrap_or("00");
    dir.join(prefix).join(sha256)
}

/// Deletes stored files no document refers to any more.
pub fn remove(dir: &Path, shas: &[String]) {
    for sha in shas {
        if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = fs_err::remove_file(path(dir, sha));
        }
    }
}

/// Removes temporary files a crash left behind (at start-up).
pub fn clean_temp(dir: &Path) {
    if let Ok(entries) = fs_err::read_dir(dir.join("tmp")) {
        for entry in entries.flatten() {
            let _ = fs_err::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_is_stored_once_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Incoming::start(dir.path(), 100).unwrap();
        a.write(b"hello ").unwrap();
        a.write(b"world").unwrap();
        let a = a.finish().unwrap();
        let mut b = Incoming::start(dir.path(), 100).unwrap();
        b.write(b"hello world").unwrap();
        let b = b.finish().unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(
            fs_err::read(path(dir.path(), &a.sha256)).unwrap(),
            b"hello world"
        );
        let mut big = Incoming::start(dir.path(), 4).unwrap();
        assert!(matches!(
            big.write(b"12345"),
            Err(FileError::TooLarge { limit: 4 })
        ));
        drop(big);
        assert_eq!(fs_err::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(matches!(
            Incoming::start(dir.path(), 4).unwrap().finish(),
            Err(FileError::Empty)
        ));
    }
}
