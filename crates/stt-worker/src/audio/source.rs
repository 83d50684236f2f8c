//! The upload as the demuxers read it. It remembers what a demuxer's error cannot tell:
//! whether the file itself failed (the server's fault) or ran out (a truncated upload, or the
//! end of a stream without sizes), as opposed to a parser running out of a damaged element.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use symphonia::core::errors::Error as DecodeFailure;
use symphonia::core::formats::FormatReader;
use symphonia::core::formats::probe::Hint;
use symphonia::core::io::{MediaSource, MediaSourceStream};

use super::AudioError;

/// The uploaded file, shared with the demuxer.
pub(super) struct Upload {
    file: File,
    len: u64,
    /// Whether demuxers may seek; without, they read the file as a stream.
    seekable: bool,
    state: Arc<UploadState>,
}

/// What reading the upload has shown, seen by the demuxer's reads and the decode loop alike.
#[derive(Default)]
pub(super) struct UploadState {
    /// Whether a read found the end of the file.
    pub(super) reached_end: AtomicBool,
    /// The first error the file gave.
    pub(super) failed: OnceLock<(io::ErrorKind, String)>,
}

impl Upload {
    /// Finds the container's demuxer and opens it at the file's start.
    pub(super) fn probe(
        file: &File,
        len: u64,
        seekable: bool,
        state: &Arc<UploadState>,
    ) -> Result<Box<dyn FormatReader>, DecodeFailure> {
        let mut file = state.watch(file.try_clone())?;
        state.watch(file.seek(SeekFrom::Start(0)))?;
        let state = Arc::clone(state);
        let upload = Upload {
            file,
            len,
            seekable,
            state,
        };
        let source = MediaSourceStream::new(Box::new(upload), Default::default());
        let probe = symphonia::default::get_probe();
        probe.probe(&Hint::new(), source, Default::default(), Default::default())
    }
}

impl UploadState {
    pub(super) fn io_error(&self) -> AudioError {
        let failed = self.failed.get().cloned();
        let (kind, text) = failed.unwrap_or((io::ErrorKind::Other, String::new()));
        AudioError::Io(io::Error::new(kind, text))
    }

    fn watch<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && e.kind() != io::ErrorKind::Interrupted
        {
            let _ = self.failed.set((e.kind(), e.to_string()));
        }
        result
    }
}

impl Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.state.watch(self.file.read(buf))?;
        if read == 0 && !buf.is_empty() {
            self.state.reached_end.store(true, Ordering::Relaxed);
        }
        Ok(read)
    }
}

impl Seek for Upload {
    /// A regular file only fails a seek to an impossible position, which a damaged container
    /// asks for: a data error, not the file's.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}

impl MediaSource for Upload {
    fn is_seekable(&self) -> bool {
        self.seekable
    }

    fn byte_len(&self) -> Option<u64> {
        self.seekable.then_some(self.len)
    }
}
