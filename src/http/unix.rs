//! The daemon's Unix socket as a file: created with mode 0660 and the configured
//! group, a stale file from a killed daemon replaced (only if it is a socket nobody
//! answers on), and removed again when the daemon stops. What is served on it, and
//! how, is the listener's (`server.rs`); who its peers act as is `http::auth`'s.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The permissions of the socket file: the daemon's user and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// The credentials of the process at the other end of a Unix socket connection, as the
/// kernel recorded them when it connected (`SO_PEERCRED`). The listener attaches them
/// to every request of that connection; only Unix socket requests have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
}

/// A bound Unix socket whose file is removed when this is dropped (if the file is
/// still this socket's: a later daemon's socket at the same path is left alone).
#[derive(Debug)]
pub struct UnixSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    inode: (u64, u64, i64, i64),
}

impl UnixSocket {
    /// Binds `path` with [`SOCKET_MODE`], in group `group` when given (else the
    /// daemon's own group). An existing socket file nobody answers on is a leftover of
    /// a daemon that was killed and is replaced; anything else at `path` is an error.
    pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixSocket, String> {
        remove_stale(path)?;
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
            format!(
                "cannot listen on the Unix socket {}: {e} (choose another path with server.unix_socket, or \"\" for none)",
                path.display()
            )
        })?;
        // The process umask (077) made the file 0700 at bind, so nobody else could
        // connect in between; now open it to the group.
        let set_up = || -> io::Result<(u64, u64, i64, i64)> {
            if let Some(gid) = group {
                rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            }
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
            Ok(identity(&fs_err::symlink_metadata(path)?))
        };
        let inode = set_up().map_err(|e| {
            let _ = fs_err::remove_file(path);
            format!(
                "cannot set the owner group or mode of the Unix socket {}: {e} (the daemon's user must be a member of server.unix_socket_group)",
                path.display()
            )
        })?;
        Ok(UnixSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
            inode,
        })
    }

    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, for the accept loop (once; the file stays until drop).
    pub fn take_listener(&mut self) -> Option<std::os::unix::net::UnixListener> {
        self.listener.take()
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let ours =
            fs_err::symlink_metadata(&self.path).is_ok_and(|meta| identity(&meta) == self.inode);
        if ours && let Err(e) = fs_err::remove_file(&self.path) {
            tracing::warn!(error = %e, "could not remove the Unix socket");
        }
    }
}

/// What tells one file at a path from a later one: device, inode and change time
/// (inode numbers are reused once a file is gone).
fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

/// Removes a socket file left by a daemon that did not stop cleanly. The instance lock
/// means no other daemon serves this data dir, but another data dir's daemon may use
/// the same path: a socket that answers is in use and left alone.
fn remove_stale(path: &Path) -> Result<(), String> {
    let meta = match fs_err::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot check the Unix socket path: {e}")),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; the daemon will not replace it (remove it, or choose server.unix_socket)",
            path.display()
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "another process is listening on the Unix socket {} (another appliance with the same runtime dir?)",
            path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing the Unix socket left by a previous run");
            fs_err::remove_file(path).map_err(|e| format!("cannot remove a stale socket: {e}"))
        }
        Err(e) => Err(format!(
            "cannot tell whether the existing Unix socket {} is in use: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_0660_replaces_a_stale_file_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let socket = UnixSocket::bind(&path, None).unwrap();
        let meta = fs_err::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);

        // Listening: a second daemon is refused, and the file stays.
        let err = UnixSocket::bind(&path, None).unwrap_err();
        assert!(err.contains("another process is listening"), "{err}");

        drop(socket);
        assert!(!path.exists(), "removed at shutdown");

        // A socket nobody listens on (a killed daemon's) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let socket = UnixSocket::bind(&path, Some(rustix::process::getgid().as_raw())).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(socket);

        // Anything else at the path is left alone.
        fs_err::write(&path, "not a socket").unwrap();
        let err = UnixSocket::bind(&path, None).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "not a socket");
    }

    #[test]
    fn a_replaced_socket_file_is_not_removed_by_the_old_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let old = UnixSocket::bind(&path, None).unwrap();
        fs_err::remove_file(&path).unwrap();
        let new = UnixSocket::bind(&path, None).unwrap();
        drop(old);
        assert!(path.exists(), "the newer socket's file stays");
        drop(new);
        assert!(!path.exists());
    }
}
