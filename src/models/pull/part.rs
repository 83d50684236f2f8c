//! The partial file of a download: `<models_dir>/.partial/<sha256>.gguf.part`, written
//! and hashed on a blocking thread so the async side only moves bytes.
//!
//! Named by the content's sha256, a partial file is found again by any later pull of
//! the same file (after a dropped connection, a cancelled request or a daemon restart)
//! and resumed from its length: the bytes already there are hashed first, so the digest
//! always covers the whole file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::PullError;

/// The directory of partial downloads inside the models dir.
pub const PARTIAL_DIR: &str = ".partial";

/// Where the partial download of the file with this sha256 lives.
pub fn part_path(models_dir: &Path, sha256: &str) -> PathBuf {
    models_dir
        .join(PARTIAL_DIR)
        .join(format!("{sha256}.gguf.part"))
}

/// Bytes already downloaded into a partial file (0 when there is none).
pub fn existing_len(path: &Path) -> u64 {
    fs_err::metadata(path).map(|m| m.len()).unwrap_or(0)
}

type Writing = tokio::task::JoinHandle<Result<(u64, String), PullError>>;

enum Op {
    Append(Bytes),
    /// The server ignored the range: start the file over.
    Restart,
}

/// A partial file being written by its own thread.
pub struct PartWriter {
    tx: Option<mpsc::Sender<Op>>,
    done: Option<Writing>,
    /// Bytes in the file once every queued write lands.
    pub len: u64,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> PullError {
    move |source| PullError::Io { context, source }
}

impl PartWriter {
    /// Opens (or creates) the partial file, hashes what is already there (a file longer
    /// than `size` is started over), and starts the writer thread.
    pub async fn open(path: PathBuf, size: u64) -> Result<PartWriter, PullError> {
        let (tx, mut rx) = mpsc::channel::<Op>(16);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let done = tokio::task::spawn_blocking(move || {
            let opened = (|| -> Result<(fs_err::File, Sha256, u64), PullError> {
                if let Some(dir) = path.parent() {
                    fs_err::create_dir_all(dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                }
                let mut file = fs_err::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io(format!("opening {}", path.display())))?;
                let mut hasher = Sha256::new();
                let mut len = file
                    .metadata()
                    .map_err(io(format!("reading {}", path.display())))?
                    .len();
                if len > size {
                    file.set_len(0)
                        .map_err(io(format!("truncating {}", path.display())))?;
                    len = 0;
                }
                let mut buffer = vec![0u8; 1 << 20];
                let mut hashed = 0u64;
                while hashed < len {
                    let n = file
                        .read(&mut buffer)
                        .map_err(io(format!("reading {}", path.display())))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    hashed += n as u64;
                }
                file.seek(SeekFrom::Start(hashed))
                    .map_err(io(format!("seeking in {}", path.display())))?;
                file.set_len(hashed)
                    .map_err(io(format!("truncating {}", path.display())))?;
                Ok((file, hasher, hashed))
            })();
            let (mut file, mut hasher, mut len) = match opened {
                Ok((file, hasher, len)) => {
                    let _ = ready_tx.send(Ok(len));
                    (file, hasher, len)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(()));
                    return Err(e);
                }
            };
            while let Some(op) = rx.blocking_recv() {
                match op {
                    Op::Append(bytes) => {
                        file.write_all(&bytes)
                            .map_err(io(format!("writing {}", path.display())))?;
                        hasher.update(&bytes);
                        len += bytes.len() as u64;
                    }
                    Op::Restart => {
                        file.set_len(0)
                            .map_err(io(format!("truncating {}", path.display())))?;
                        file.seek(SeekFrom::Start(0))
                            .map_err(io(format!("seeking in {}", path.display())))?;
                        hasher = Sha256::new();
                        len = 0;
                    }
                }
            }
            file.sync_all()
                .map_err(io(format!("syncing {}", path.display())))?;
            let digest = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            Ok((len, digest))
        });
        match ready_rx.await {
            Ok(Ok(len)) => Ok(PartWriter {
                tx: Some(tx),
                done: Some(done),
                len,
            }),
            _ => Err(Self::failure(done).await),
        }
    }

    /// The writer thread's error (it stopped early).
    async fn failure(done: Writing) -> PullError {
        match done.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => PullError::Internal("the partial file's writer stopped".into()),
            Err(e) => PullError::Internal(format!("the partial file's writer failed: {e}")),
        }
    }

    /// Queues bytes for the end of the file.
    pub async fn append(&mut self, bytes: Bytes) -> Result<(), PullError> {
        let n = bytes.len() as u64;
        self.send(Op::Append(bytes)).await?;
        self.len += n;
        Ok(())
    }

    /// Starts the file over (the server sent the whole file instead of a range).
    pub async fn restart(&mut self) -> Result<(), PullError> {
        self.send(Op::Restart).await?;
        self.len = 0;
        Ok(())
    }

    async fn send(&mut self, op: Op) -> Result<(), PullError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(op).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped on an error: report it (once).
        self.tx = None;
        Err(match self.done.take() {
            Some(done) => Self::failure(done).await,
            None => PullError::Internal("the partial file's writer stopped".into()),
        })
    }

    /// Flushes and syncs the file; returns its length and sha256.
    pub async fn finish(mut self) -> Result<(u64, String), PullError> {
        self.tx = None;
        match self.done.take() {
            Some(done) => match done.await {
                Ok(result) => result,
                Err(e) => Err(PullError::Internal(format!(
                    "the partial file's writer failed: {e}"
                ))),
            },
            None => Err(PullError::Internal(
                "the partial file's writer stopped".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resumed_file_hashes_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = part_path(dir.path(), &"ab".repeat(32));
        let mut writer = PartWriter::open(path.clone(), 6).await.unwrap();
        assert_eq!(writer.len, 0);
        writer.append(Bytes::from_static(b"abc")).await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(existing_len(&path), 3);

        let mut writer = PartWriter::open(path.clone(), 6).await.unwrap();
        assert_eq!(writer.len, 3);
        writer.append(Bytes::from_static(b"def")).await.unwrap();
        let (len, digest) = writer.finish().await.unwrap();
        assert_eq!(len, 6);
        // sha256("abcdef")
        assert_eq!(
            digest,
            "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"
        );
    }

    #[tokio::test]
    async fn a_restart_or_an_oversized_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = part_path(dir.path(), &"cd".repeat(32));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, b"0123456789").unwrap();
        let mut writer = PartWriter::open(path.clone(), 6).await.unwrap();
        assert_eq!(writer.len, 0, "longer than the file can be: started over");
        writer.append(Bytes::from_static(b"xyz")).await.unwrap();
        writer.restart().await.unwrap();
        writer.append(Bytes::from_static(b"abcdef")).await.unwrap();
        let (len, digest) = writer.finish().await.unwrap();
        assert_eq!(len, 6);
        assert_eq!(
            digest,
            "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"
        );
        assert_eq!(fs_err::read(&path).unwrap(), b"abcdef");
    }
}
