//! Prometheus metrics: what an operator pages on.
//!
//! One [`Metrics`] value per server (no process-global registry), so several
//! servers can live in one test process and a future sharded deployment can
//! run more than one hub per process.

use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Direction of traffic on `/sync`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// From a peer to the server.
    In,
    /// From the server to a peer.
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// Labels for sync message counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// in / out.
    pub direction: Direction,
    /// The protocol message type (`sync`, `request`, …).
    pub kind: &'static str,
}

/// Labels for direction-only counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// in / out.
    pub direction: Direction,
}

/// Why a connection or message was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A short stable reason code.
    pub reason: &'static str,
}

/// A storage operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `load`, `load_range`, `put`, `delete`, `commit`.
    pub operation: &'static str,
}

/// HTTP request labels (route is the matched pattern, never the raw path).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Method.
    pub method: String,
    /// Matched route pattern.
    pub route: String,
    /// Status code.
    pub status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50µs … ~50s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open `/sync` WebSocket connections.
    pub ws_connections: Gauge,
    /// Accepted `/sync` connections since start.
    pub ws_connections_total: Counter,
    /// Connections closed or messages dropped by the gateway, by reason.
    pub ws_rejections: Family<ReasonLabels, Counter>,
    /// Protocol messages by direction and type.
    pub sync_messages: Family<MessageLabels, Counter>,
    /// Bytes on `/sync` by direction.
    pub sync_bytes: Family<DirectionLabels, Counter>,
    /// Automerge documents held in memory by samod.
    pub documents_loaded: Gauge,
    /// Time from an outgoing sync message being produced to its heads being durable.
    pub durability_wait_seconds: Histogram,
    /// Outgoing messages released after the durability wait timed out.
    pub durability_timeouts: Counter,
    /// Storage operation latency (from the caller's point of view).
    pub storage_seconds: HistogramFamily<OperationLabels>,
    /// SQLite errors by operation.
    pub storage_errors: Family<OperationLabels, Counter>,
    /// Jobs per committed write transaction.
    pub storage_batch_jobs: Histogram,
    /// Bytes handed to SQLite in chunk puts.
    pub storage_bytes_written: Counter,
    /// Write jobs waiting for the writer thread.
    pub storage_queue_depth: Gauge,
    /// 1 when storage accepts writes, 0 when it has failed and the server is read-only.
    pub storage_writable: Gauge,
    /// Refused credentials (API tokens and sync tickets), by kind.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Per-user limits hit, by limit.
    pub limit_hits: Family<ReasonLabels, Counter>,
    /// GitHub webhook deliveries, by outcome (`applied`, `ignored`,
    /// `bad_signature`, `replayed`, `unknown_repository`, `bad_request`).
    pub webhook_deliveries: Family<ReasonLabels, Counter>,
    /// HTTP requests.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP latency by route.
    pub http_seconds: HistogramFamily<HttpLabels>,
    /// Settled queue entries, by outcome (`done`, `failed`, `cancelled`).
    pub agent_runs: Family<ReasonLabels, Counter>,
    /// Sandbox starts, by result (`ok`, `failed`).
    pub sandbox_starts: Family<ReasonLabels, Counter>,
    /// OpenCode restarts the sandboxes' sidecars reported.
    pub opencode_restarts: Counter,
    /// Heartbeats received from sidecars.
    pub sidecar_heartbeats: Counter,
    /// Sandboxes holding one of the server's slots (running or starting).
    pub sandboxes_running: Gauge,
    /// Sandbox starts waiting for a free slot (`--max-sandboxes`).
    pub sandbox_starts_waiting: Gauge,
    /// How long a sandbox start takes (to OpenCode answering).
    pub sandbox_start_seconds: Histogram,
    /// Idle sandboxes stopped, by result (`ok`, `failed`).
    pub sandbox_hibernations: Family<ReasonLabels, Counter>,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("canopy");
        let m = Metrics {
            ws_connections: Gauge::default(),
            ws_connections_total: Counter::default(),
            ws_rejections: Family::default(),
            sync_messages: Family::default(),
            sync_bytes: Family::default(),
            documents_loaded: Gauge::default(),
            durability_wait_seconds: latency_histogram(),
            durability_timeouts: Counter::default(),
            storage_seconds: Family::new_with_constructor(latency_histogram),
            storage_errors: Family::default(),
            storage_batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            storage_bytes_written: Counter::default(),
            storage_queue_depth: Gauge::default(),
            storage_writable: Gauge::default(),
            auth_failures: Family::default(),
            limit_hits: Family::default(),
            webhook_deliveries: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            agent_runs: Family::default(),
            sandbox_starts: Family::default(),
            opencode_restarts: Counter::default(),
            sidecar_heartbeats: Counter::default(),
            sandboxes_running: Gauge::default(),
            sandbox_starts_waiting: Gauge::default(),
            sandbox_start_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            sandbox_hibernations: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "agent_runs",
            "Settled queue entries by outcome (done, failed, cancelled)",
            m.agent_runs.clone(),
        );
        registry.register(
            "sandbox_starts",
            "Sandbox starts by result (ok, failed)",
            m.sandbox_starts.clone(),
        );
        registry.register(
            "opencode_restarts",
            "OpenCode processes the sandboxes' sidecars had to restart",
            m.opencode_restarts.clone(),
        );
        registry.register(
            "sidecar_heartbeats",
            "Heartbeats received from sandbox sidecars",
            m.sidecar_heartbeats.clone(),
        );
        registry.register(
            "ws_connections",
            "Open /sync WebSocket connections",
            m.ws_connections.clone(),
        );
        registry.register(
            "ws_connections_accepted",
            "Accepted /sync WebSocket connections",
            m.ws_connections_total.clone(),
        );
        registry.register(
            "ws_rejections",
            "Connections closed or messages refused by the sync gateway, by reason",
            m.ws_rejections.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused API tokens and sync tickets, by kind",
            m.auth_failures.clone(),
        );
        registry.register(
            "limit_hits",
            "Per-user limits hit (API rate, queued prompts, prompt size), by limit",
            m.limit_hits.clone(),
        );
        registry.register(
            "github_webhook_deliveries",
            "GitHub webhook deliveries by outcome (a run of bad_signature is someone guessing, or a rotated secret)",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "sync_messages",
            "automerge-repo protocol messages by direction and type",
            m.sync_messages.clone(),
        );
        registry.register(
            "sync_bytes",
            "Bytes of protocol messages by direction",
            m.sync_bytes.clone(),
        );
        registry.register(
            "documents_loaded",
            "Automerge documents held in memory",
            m.documents_loaded.clone(),
        );
        registry.register(
            "durability_wait_seconds",
            "Time an outgoing sync message waited for its heads to be durable",
            m.durability_wait_seconds.clone(),
        );
        registry.register(
            "durability_timeouts",
            "Outgoing sync messages released after the durability wait timed out",
            m.durability_timeouts.clone(),
        );
        registry.register(
            "storage_seconds",
            "SQLite storage operation latency",
            m.storage_seconds.clone(),
        );
        registry.register(
            "storage_errors",
            "SQLite errors by operation",
            m.storage_errors.clone(),
        );
        registry.register(
            "storage_batch_jobs",
            "Write jobs committed per SQLite transaction",
            m.storage_batch_jobs.clone(),
        );
        registry.register(
            "storage_written_bytes",
            "Bytes of document chunks written to SQLite",
            m.storage_bytes_written.clone(),
        );
        registry.register(
            "storage_queue_depth",
            "Write jobs waiting for the SQLite writer",
            m.storage_queue_depth.clone(),
        );
        registry.register(
            "storage_writable",
            "1 when storage accepts writes; 0 when the server has fallen back to read-only",
            m.storage_writable.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency",
            m.http_seconds.clone(),
        );
        registry.register(
            "sandboxes_running",
            "Sandboxes holding one of the server's slots (running or starting)",
            m.sandboxes_running.clone(),
        );
        registry.register(
            "sandbox_starts_waiting",
            "Sandbox starts waiting for a free slot (--max-sandboxes)",
            m.sandbox_starts_waiting.clone(),
        );
        registry.register(
            "sandbox_start_seconds",
            "Time from a sandbox start to its OpenCode answering",
            m.sandbox_start_seconds.clone(),
        );
        registry.register(
            "sandbox_hibernations",
            "Idle sandboxes stopped (snapshotted first where the backend can), by result",
            m.sandbox_hibernations.clone(),
        );
        m.storage_writable.set(1);
        Arc::new(Metrics { registry, ..m })
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Count one protocol message.
    pub fn message(&self, direction: Direction, kind: &'static str, bytes: usize) {
        self.sync_messages
            .get_or_create(&MessageLabels { direction, kind })
            .inc();
        self.sync_bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes as u64);
    }

    /// Count a refused credential.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Count a settled run.
    pub fn agent_run(&self, outcome: &'static str) {
        self.agent_runs
            .get_or_create(&ReasonLabels { reason: outcome })
            .inc();
    }

    /// Count a sandbox start.
    pub fn sandbox_start(&self, result: &'static str) {
        self.sandbox_starts
            .get_or_create(&ReasonLabels { reason: result })
            .inc();
    }

    /// Count a webhook delivery's outcome.
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&ReasonLabels { reason: outcome })
            .inc();
    }

    /// Count a limit hit.
    pub fn limit_hit(&self, reason: &'static str) {
        self.limit_hits
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Count a refusal by the sync gateway.
    pub fn reject(&self, reason: &'static str) {
        self.ws_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Observe a storage operation's latency.
    pub fn storage_op(&self, operation: &'static str, seconds: f64) {
        self.storage_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    /// Count a storage error.
    pub fn storage_error(&self, operation: &'static str) {
        self.storage_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }
}
