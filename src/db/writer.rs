//! The writer thread: the only code that writes to SQLite.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::{CommitHold, DbConfig, DbError, Job, Msg, StorageHealth};
use crate::metrics::Metrics;

pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    health: watch::Sender<StorageHealth>,
    closing: Arc<AtomicBool>,
    hold: Arc<CommitHold>,
    metrics: Arc<Metrics>,
    config: DbConfig,
) -> Result<(), DbError> {
    std::thread::Builder::new()
        .name("canopy-sqlite-writer".into())
        .spawn(move || {
            Writer {
                conn,
                rx,
                health,
                closing,
                hold,
                metrics,
                config,
            }
            .run()
        })
        .map_err(|e| DbError::Task(format!("cannot start the SQLite writer thread: {e}")))?;
    Ok(())
}

struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    health: watch::Sender<StorageHealth>,
    closing: Arc<AtomicBool>,
    hold: Arc<CommitHold>,
    metrics: Arc<Metrics>,
    config: DbConfig,
}

/// Errors caused by the environment rather than by the job: retrying the
/// same batch later can succeed.
fn is_environmental(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
        )
    )
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Job> = Vec::new();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        while shutdown.is_none() {
            match self.rx.blocking_recv() {
                None => break,
                Some(Msg::Shutdown(ack)) => shutdown = Some(ack),
                Some(Msg::Write(job)) => batch.push(job),
            }
            let mut bytes: usize = batch.iter().map(|j| j.bytes).sum();
            while shutdown.is_none()
                && batch.len() < self.config.batch_max_jobs
                && bytes < self.config.batch_max_bytes
            {
                match self.rx.try_recv() {
                    Ok(Msg::Write(job)) => {
                        bytes += job.bytes;
                        batch.push(job);
                    }
                    Ok(Msg::Shutdown(ack)) => shutdown = Some(ack),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit_with_retry(&mut batch);
            }
        }
        // Shutting down: whatever is still queued was sent before the
        // shutdown request; commit it too.
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Write(job) = msg {
                batch.push(job);
            }
        }
        if !batch.is_empty() {
            self.commit_with_retry(&mut batch);
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
        }
        match self.conn.close() {
            Ok(()) => {}
            Err((_, e)) => tracing::error!(error = %e, "closing the database failed"),
        }
        if let Some(ack) = shutdown {
            let _ = ack.send(());
        }
    }

    fn commit_with_retry(&mut self, batch: &mut Vec<Job>) {
        self.hold.wait();
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            match self.run_batch(batch) {
                Ok(outcomes) => {
                    let m = &self.metrics;
                    m.storage_op("commit", started.elapsed().as_secs_f64());
                    m.storage_batch_jobs.observe(batch.len() as f64);
                    m.storage_queue_depth.dec_by(batch.len() as i64);
                    for (job, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = job.done.send(outcome);
                    }
                    if !self.health.borrow().is_ok() {
                        tracing::warn!(attempt, "storage recovered; accepting writes again");
                        self.metrics.storage_writable.set(1);
                        self.health.send_replace(StorageHealth::Ok);
                    }
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    self.metrics.storage_error("commit");
                    let failed = attempt >= self.config.retry.attempts;
                    if failed && self.health.borrow().is_ok() {
                        tracing::error!(
                            error = %e,
                            jobs = batch.len(),
                            "storage writes keep failing; the server is read-only until they succeed"
                        );
                        self.metrics.storage_writable.set(0);
                        self.health.send_replace(StorageHealth::Failed {
                            error: e.to_string(),
                        });
                    } else {
                        tracing::warn!(error = %e, attempt, "storage write failed; retrying");
                    }
                    if failed && self.closing.load(Ordering::SeqCst) {
                        // Shutting down with storage still failing: give up
                        // loudly. Peers were never told these changes were
                        // stored (see the durability barrier), so they still
                        // hold them.
                        tracing::error!(
                            jobs = batch.len(),
                            "shutting down with uncommitted writes"
                        );
                        self.metrics.storage_queue_depth.dec_by(batch.len() as i64);
                        for job in batch.drain(..) {
                            let _ = job.done.send(Err(DbError::Unavailable(e.to_string())));
                        }
                        return;
                    }
                    std::thread::sleep(self.backoff(attempt));
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let r = &self.config.retry;
        r.initial
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1))
            .min(r.max)
    }

    /// One transaction for the whole batch, one savepoint per job.
    fn run_batch(&mut self, batch: &[Job]) -> rusqlite::Result<Vec<Result<(), DbError>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            tx.execute_batch("SAVEPOINT job")?;
            match (job.op)(&tx) {
                Ok(()) => {
                    tx.execute_batch("RELEASE job")?;
                    outcomes.push(Ok(()));
                }
                Err(e) if is_environmental(&e) => return Err(e),
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    outcomes.push(Err(DbError::Rejected(e.to_string())));
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}
