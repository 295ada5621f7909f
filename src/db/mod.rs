//! The SQLite database: one writer thread that owns every write, and a small
//! pool of read connections.
//!
//! WAL mode lets readers run next to the writer. The writer drains whatever
//! jobs are queued and commits them in one transaction (group commit), so a
//! burst of document changes costs one fsync, not one per change. Each job
//! runs inside its own savepoint: a job that breaks a constraint fails alone,
//! while an environmental error (disk full, I/O error, busy) rolls back the
//! batch and retries it with backoff. After the retries are spent the
//! database reports [`StorageHealth::Failed`], keeps the batch and keeps
//! retrying; nothing queued is dropped.

mod schema;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

pub use schema::SchemaError;

use crate::metrics::Metrics;

/// How hard SQLite works to make a commit survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: committed data survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: committed data survives a process crash
    /// but the last commits can be lost on power loss.
    Normal,
}

/// Retry schedule for environmental write errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before storage is declared failed.
    pub attempts: u32,
    /// First backoff; doubles per attempt.
    pub initial: Duration,
    /// Backoff cap, and the retry interval once failed.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial: Duration::from_millis(10),
            max: Duration::from_secs(2),
        }
    }
}

/// Database settings.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// The database file.
    pub path: PathBuf,
    /// Commit durability.
    pub synchronous: Synchronous,
    /// Upper bound for the file size in bytes (a quota; SQLite answers
    /// "database or disk is full" beyond it).
    pub max_bytes: Option<u64>,
    /// Largest number of jobs in one transaction.
    pub batch_max_jobs: usize,
    /// Largest number of payload bytes in one transaction.
    pub batch_max_bytes: usize,
    /// Retry schedule.
    pub retry: RetryPolicy,
}

impl DbConfig {
    /// Defaults for a database file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DbConfig {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_bytes: None,
            batch_max_jobs: 1024,
            batch_max_bytes: 32 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

/// Whether storage accepts writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageHealth {
    /// Writes commit.
    Ok,
    /// Writes have failed past the retry budget; the server is read-only
    /// until a retry succeeds.
    Failed {
        /// The last SQLite error.
        error: String,
    },
}

impl StorageHealth {
    /// Whether writes currently commit.
    pub fn is_ok(&self) -> bool {
        matches!(self, StorageHealth::Ok)
    }
}

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database has been closed (server shutting down).
    #[error("database is closed")]
    Closed,
    /// The job itself was refused by SQLite (e.g. a constraint); other jobs
    /// in its batch committed.
    #[error("write rejected: {0}")]
    Rejected(String),
    /// Storage has failed and the write could not be committed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A read or setup step failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A blocking task panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

/// A replayable write: it may run more than once if its batch is retried.
pub(crate) type WriteFn = Box<dyn Fn(&Connection) -> rusqlite::Result<()> + Send>;

pub(crate) struct Job {
    pub(crate) op: WriteFn,
    pub(crate) bytes: usize,
    pub(crate) done: oneshot::Sender<Result<(), DbError>>,
}

pub(crate) enum Msg {
    Write(Job),
    Shutdown(oneshot::Sender<()>),
}

/// A switch the writer checks before each commit (fault injection).
#[derive(Default)]
pub(crate) struct CommitHold {
    held: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl CommitHold {
    fn set(&self, held: bool) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        self.changed.notify_all();
    }

    /// Block while commits are held.
    pub(crate) fn wait(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held {
            held = self.changed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Handle to the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Msg>,
    hold: Arc<CommitHold>,
    readers: Mutex<Vec<Connection>>,
    health: watch::Receiver<StorageHealth>,
    closing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

/// Connection settings shared by the writer and readers.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Small pages: most writes are one small automerge change, and every
/// commit writes whole pages to the WAL and again at checkpoint, so the page
/// size is the floor of bytes written per change (measured in
/// docs/benchmarks.md). Large snapshots spill into overflow pages either way.
const PAGE_SIZE: u64 = 1024;
const MAX_READERS: usize = 8;

impl Database {
    /// Open (creating if needed) and migrate the database, and start the
    /// writer thread.
    pub fn open(config: DbConfig, metrics: Arc<Metrics>) -> Result<Database, DbError> {
        if let Some(parent) = config.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbError::Task(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut conn = Connection::open(&config.path)?;
        configure(&conn)?;
        // Must precede WAL mode and the first table; ignored on an existing file.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Task(format!(
                "SQLite refused WAL mode (got {mode}); is the data dir on a network filesystem?"
            )));
        }
        conn.pragma_update(
            None,
            "synchronous",
            match config.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        )?;
        schema::migrate(&mut conn)?;
        if let Some(max) = config.max_bytes {
            let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (max / page_size.max(512)).max(1);
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }

        let (tx, rx) = mpsc::channel(8192);
        let (health_tx, health_rx) = watch::channel(StorageHealth::Ok);
        let closing = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(CommitHold::default());
        writer::spawn(
            conn,
            rx,
            health_tx,
            closing.clone(),
            hold.clone(),
            metrics.clone(),
            config.clone(),
        )?;
        Ok(Database {
            inner: Arc::new(Inner {
                path: config.path,
                jobs: tx,
                hold,
                readers: Mutex::new(Vec::new()),
                health: health_rx,
                closing,
                metrics,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Current storage health.
    pub fn health(&self) -> StorageHealth {
        self.inner.health.borrow().clone()
    }

    /// Watch storage health changes.
    pub fn subscribe_health(&self) -> watch::Receiver<StorageHealth> {
        self.inner.health.clone()
    }

    /// Queue a write and wait until it is committed (durable per
    /// [`Synchronous`]). `bytes` is the payload size, for batching.
    pub(crate) async fn write<F>(&self, bytes: usize, op: F) -> Result<(), DbError>
    where
        F: Fn(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let job = Job {
            op: Box::new(op),
            bytes,
            done,
        };
        self.inner.metrics.storage_queue_depth.inc();
        let sent = self.inner.jobs.send(Msg::Write(job)).await;
        if sent.is_err() {
            self.inner.metrics.storage_queue_depth.dec();
            return Err(DbError::Closed);
        }
        rx.await.unwrap_or(Err(DbError::Closed))
    }

    /// Like [`Database::write`], returning what `op` returned on the attempt
    /// that committed (a write may be retried; `op` must be repeatable).
    pub(crate) async fn write_returning<T, F>(&self, bytes: usize, op: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        self.write(bytes, move |conn| {
            let value = op(conn)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
            Ok(())
        })
        .await?;
        let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        value.ok_or_else(|| DbError::Task("a committed write left no result".into()))
    }

    /// Run a read on a pooled read-only connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = op(&conn);
            inner.return_reader(conn);
            result.map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Fault injection for tests: hold every commit until
    /// [`Database::release_commits`]. Lets a test observe what the server does
    /// while the disk is slow (it must not acknowledge changes).
    #[doc(hidden)]
    pub fn hold_commits(&self) {
        self.inner.hold.set(true);
    }

    /// Undo [`Database::hold_commits`].
    #[doc(hidden)]
    pub fn release_commits(&self) {
        self.inner.hold.set(false);
    }

    /// Announce shutdown: from now on, a batch that has exhausted its
    /// retries is answered with an error instead of being retried forever,
    /// so shutdown cannot hang on a failed disk. Healthy writes are
    /// unaffected.
    pub fn begin_close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Stop the writer after it has committed everything queued, checkpoint
    /// the WAL and close the files. Later writes fail with [`DbError::Closed`].
    pub async fn close(&self) {
        self.begin_close();
        let (ack, done) = oneshot::channel();
        let started = Instant::now();
        if self.inner.jobs.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "database closed"
        );
    }
}

impl Inner {
    fn take_reader(&self) -> rusqlite::Result<Connection> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&conn)?;
        Ok(conn)
    }

    fn return_reader(&self, conn: Connection) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_READERS {
            pool.push(conn);
        }
    }
}
