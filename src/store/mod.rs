//! The store: one SQLite database file, and the only module that contains SQL.
//!
//! A [`Store`] is a cheap-to-clone handle. Its calls are closures that run on dedicated
//! OS threads, never on an async worker: one writer thread owns the only read-write
//! connection (SQLite allows one writer at a time anyway), and a few reader threads
//! own read-only connections (WAL lets them read while the writer writes). Each call
//! carries its own reply channel; the async caller awaits it.
//!
//! The queues to the threads are bounded: when the database falls behind, a call waits
//! a few seconds for a place and then fails with [`StoreError::Busy`] (a 503) instead
//! of piling up work without end. Every write transaction is `IMMEDIATE`: it takes the
//! write lock when it begins, so another process writing at the same moment (the CLI
//! beside the daemon) makes it wait for the busy timeout instead of failing at once.
//!
//! Durability policy: WAL journal with `synchronous = FULL`, so a transaction that has
//! returned from `commit` is on disk and survives power loss (with `NORMAL`, WAL can
//! lose the last transactions on power loss). Foreign keys are enforced and a busy
//! timeout is set on every connection. The sqlite-vec extension is registered for every
//! connection the process opens.

pub mod accounts;
pub mod chunks;
pub mod conversations;
pub mod documents;
pub mod jobs;
mod migrations;
pub mod responses;
mod runs;
pub mod snapshot;
pub mod transcripts;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

pub use migrations::{LATEST as SCHEMA_VERSION, MIGRATIONS, MigrationReport};
pub use runs::{DaemonRun, RunId};

impl StoreError {
    /// Whether SQLite failed because the disk is full (`SQLITE_FULL`, or an I/O error
    /// with ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        let code = match self {
            StoreError::Sqlite(e) | StoreError::Migration { source: e, .. } => e.sqlite_error(),
            _ => None,
        };
        code.is_some_and(|c| {
            c.code == rusqlite::ErrorCode::DiskFull
                || c.extended_code == 13
                || c.extended_code == 4874
        })
    }
}

/// What can go wrong in the store. Callers act on the variant, not the text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration's SQL failed.
    #[error("schema migration {name} failed: {source}")]
    Migration {
        /// The migration file's name.
        name: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of the appliance.
    #[error(
        "the database has schema version {found}, newer than this build supports ({supported}); upgrade the appliance"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// The database file or its directory could not be prepared.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The named kind of record does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is already taken (or a one-time action was already done).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The record exists but this viewer may only read it.
    #[error("this {0} is read-only for you")]
    ReadOnly(&'static str),
    /// The store's threads have stopped (the process is shutting down).
    #[error("the database threads have stopped")]
    Closed,
    /// The database is too far behind to take more work now.
    #[error("the database is busy; retry shortly")]
    Busy,
}

/// Calls waiting for each database thread at most.
const QUEUE: usize = 1024;
/// How long a call waits for a place in a full queue.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Begins a write transaction that holds the write lock from the start.
pub(crate) fn immediate(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// Called after every store call with its name and how long it ran on its thread.
pub type QueryObserver = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

/// Options for opening a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// SQLite busy timeout.
    pub busy_timeout: Duration,
    /// Number of reader threads.
    pub readers: usize,
    /// Receives call timings (for metrics).
    pub observer: Option<QueryObserver>,
    /// Calls that may wait for each thread; more wait up to `queue_wait`, then fail
    /// with [`StoreError::Busy`].
    pub queue: usize,
    /// How long a call waits for a place in a full queue.
    pub queue_wait: Duration,
}

impl StoreOptions {
    /// The daemon's defaults with this busy timeout and number of readers.
    pub fn new(busy_timeout: Duration, readers: usize) -> StoreOptions {
        StoreOptions {
            busy_timeout,
            readers,
            observer: None,
            queue: QUEUE,
            queue_wait: QUEUE_WAIT,
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the database threads. Clone freely; the threads stop when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Job>,
    readers: mpsc::Sender<Job>,
    observer: Option<QueryObserver>,
    queue_wait: Duration,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database, applies pending migrations and starts
    /// the threads. Blocking: call it before the runtime serves requests, or from
    /// `spawn_blocking`.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let mut writer = open_connection(path, options.busy_timeout, false)?;
        migrations::migrate_to(&mut writer, migrations::LATEST)?;

        let (writer_tx, writer_rx) = mpsc::channel::<Job>(options.queue.max(1));
        spawn_worker(
            "db-writer".to_string(),
            writer,
            Arc::new(Mutex::new(writer_rx)),
        );

        let (reader_tx, reader_rx) = mpsc::channel::<Job>(options.queue.max(1));
        let reader_rx = Arc::new(Mutex::new(reader_rx));
        for i in 0..options.readers.max(1) {
            let conn = open_connection(path, options.busy_timeout, true)?;
            spawn_worker(format!("db-reader-{i}"), conn, reader_rx.clone());
        }
        Ok(Store {
            writer: writer_tx,
            readers: reader_tx,
            observer: options.observer,
            queue_wait: options.queue_wait,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer connection. `op` names the call in metrics. Only this
    /// module and its children use it: SQL lives nowhere else.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(&self.writer, op, f)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on one of the read-only connections.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(&self.readers, op, f)
            .await?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn submit<T, F>(
        &self,
        queue: &mpsc::Sender<Job>,
        op: &'static str,
        f: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let observer = self.observer.clone();
        let job: Job = Box::new(move |conn| {
            let started = Instant::now();
            let result = f(conn);
            if let Some(observe) = &observer {
                observe(op, started.elapsed());
            }
            // The caller may have gone away (request cancelled); the work is done anyway.
            let _ = reply_tx.send(result);
        });
        match tokio::time::timeout(self.queue_wait, queue.send(job)).await {
            Ok(Ok(())) => Ok(reply_rx),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Busy),
        }
    }

    /// A cheap liveness query used by `/readyz`: runs on a reader and checks that the
    /// schema is current and sqlite-vec answers.
    pub async fn ping(&self) -> Result<String, StoreError> {
        self.read("ping", |conn| {
            let version = migrations::current_version(conn)?;
            if version != migrations::LATEST {
                return Err(StoreError::SchemaTooNew {
                    found: version,
                    supported: migrations::LATEST,
                });
            }
            Ok(conn.query_row("SELECT vec_version()", [], |r| r.get(0))?)
        })
        .await
    }

    /// Reads one `meta` value (e.g. `instance_id`).
    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read("meta", move |conn| {
            let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
            let mut rows = stmt.query([key])?;
            Ok(match rows.next()? {
                Some(row) => Some(row.get(0)?),
                None => None,
            })
        })
        .await
    }
}

fn spawn_worker(name: String, mut conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            loop {
                // Hold the lock only while waiting, so the reader threads share one queue.
                let job = jobs.lock().blocking_recv();
                match job {
                    Some(job) => job(&mut conn),
                    None => return, // every Store handle is gone
                }
            }
        })
        .expect("spawning a database thread");
}

/// Registers sqlite-vec for every connection opened after this call.
fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vec_init` has the signature SQLite expects of an extension
        // entry point; `sqlite3_auto_extension` only stores the pointer, and it is
        // called once, before any connection of ours is opened.
        #[allow(unsafe_code)]
        unsafe {
            type EntryPoint = unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int;
            let entry: EntryPoint = std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(entry));
        }
    });
}

/// Opens one connection with the store's pragmas.
fn open_connection(path: &Path, busy: Duration, read_only: bool) -> Result<Connection, StoreError> {
    register_sqlite_vec();
    let err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(busy).map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, path = %path.display(), "database is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(err)?;
    if read_only {
        conn.pragma_update(None, "query_only", true).map_err(err)?;
    }
    Ok(conn)
}

/// An offline look at a database file, for `appliance doctor`: opens it without
/// creating or migrating anything.
#[derive(Debug)]
pub struct Inspection {
    /// Schema version in the file.
    pub schema_version: u32,
    /// `PRAGMA integrity_check` lines (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// sqlite-vec's version, proving the extension loads.
    pub vec_version: String,
    /// The last daemon run that never recorded a clean stop, if any.
    pub unclean_run: Option<DaemonRun>,
}

/// Inspects an existing database file read-only.
pub fn inspect(path: &Path, busy: Duration) -> Result<Inspection, StoreError> {
    register_sqlite_vec();
    let err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    conn.busy_timeout(busy).map_err(err)?;
    let schema_version = migrations::current_version(&conn)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let integrity = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let vec_version = conn.query_row("SELECT vec_version()", [], |r| r.get(0))?;
    let unclean_run = if schema_version >= 2 && integrity == ["ok"] {
        runs::last_unclean(&conn)?
    } else {
        None
    };
    Ok(Inspection {
        schema_version,
        integrity,
        vec_version,
        unclean_run,
    })
}

/// Reads one `meta` value from a database file read-only (`None`: not set).
pub fn inspect_meta(path: &Path, busy: Duration, key: &str) -> Result<Option<String>, StoreError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            StoreError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
    conn.busy_timeout(busy)?;
    let mut stmt = conn.prepare("SELECT value FROM meta WHERE key = ?1")?;
    let mut rows = stmt.query([key])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// Applies pending migrations to a database file (for `appliance db migrate`).
pub fn migrate_file(path: &Path, busy: Duration) -> Result<MigrationReport, StoreError> {
    let mut conn = open_connection(path, busy, false)?;
    migrations::migrate_to(&mut conn, migrations::LATEST)
}

#[cfg(test)]
mod tests;
