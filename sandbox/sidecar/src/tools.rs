//! The agent's feature tools, served over MCP (streamable HTTP).
//!
//! They are how an agent adds to the shared feature context (learnings,
//! decisions, key files), reads and searches it, sees the other sessions and
//! asks for new ones. Every write goes into the local replica as one change
//! made under the agent's name (`agent:<session_id>`), so it is attributed,
//! survives server outages and reaches the other sessions through sync.
//!
//! Arguments come from a model, so they are checked against explicit limits
//! and refused with a tool error (`isError: true`) that names the field and
//! the limit: the model reads that error and can fix its call, and nothing
//! is written. Arguments of the wrong JSON type are refused by rmcp with an
//! invalid-params error before a tool runs.

use std::sync::Arc;

use canopy_protocol::feature::{
    self, FeatureDoc, Importance, NewDecision, NewLearning, NewSession, QueueEntry,
};
use canopy_protocol::{ids, unix_ms_now};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};

use crate::binding::Bound;
use crate::context;
use crate::replica::{Replica, ReplicaError, SharedReplica};

/// Longest learning, in characters: a learning is a note, not a document.
pub const MAX_LEARNING_CHARS: usize = 8_000;
/// Longest decision text, in characters.
pub const MAX_DECISION_CHARS: usize = 8_000;
/// Longest rationale, in characters.
pub const MAX_RATIONALE_CHARS: usize = 8_000;
/// Most alternatives one decision may list.
pub const MAX_ALTERNATIVES: usize = 20;
/// Longest alternative, in characters.
pub const MAX_ALTERNATIVE_CHARS: usize = 2_000;
/// Most files one learning may name.
pub const MAX_FILES: usize = 50;
/// Longest repository-relative path, in bytes.
pub const MAX_PATH_BYTES: usize = 1_024;
/// Longest session title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest session scope, in characters.
pub const MAX_SCOPE_CHARS: usize = 20_000;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Longest key file note, in characters.
pub const MAX_NOTE_CHARS: usize = 4_000;
/// Matches listed per kind (learnings, decisions, …) in a search answer.
pub const MAX_SEARCH_MATCHES: usize = 30;
/// Bytes of a search answer before the remaining matches are only counted,
/// so a broad query does not flood the agent's context.
pub const MAX_SEARCH_BYTES: usize = 60_000;

/// The answer while the replica is not loaded yet (first start with the
/// server away): the agent should simply try again.
pub const NOT_LOADED: &str = "the feature document is not available yet; try again in a moment";

/// The answer while a pooled sandbox waits to be claimed by a session.
pub const NOT_BOUND: &str = "this sandbox is not bound to a session yet; the feature tools work once \
     Canopy assigns it to a session";

const ALLOWED_IMPORTANCE: &str = "\"low\", \"medium\" or \"high\"";

/// What a tool returns: text for the agent, or a refusal that rmcp sends as
/// a tool error (`isError: true`), which the agent reads and can act on.
pub type ToolResult = Result<String, String>;

/// The feature tools of one sandbox's agent. Cheap to clone: the MCP
/// transport makes one per client session.
#[derive(Clone)]
pub struct FeatureTools {
    replica: SharedReplica,
    /// The session the sandbox is bound to; `None` for tools that are bound
    /// from the start.
    bound: Option<tokio::sync::watch::Receiver<Option<Bound>>>,
    /// How to reach the server (for `create_pull_request`).
    server: Option<crate::credential::Credentials>,
    tool_router: Arc<ToolRouter<FeatureTools>>,
}

impl std::fmt::Debug for FeatureTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureTools")
            .field("replica", &*self.replica.borrow())
            .finish_non_exhaustive()
    }
}

/// Arguments of `add_learning`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct AddLearningArgs {
    /// What was learned, self-contained and specific (at most 8,000 characters).
    pub text: String,
    /// How much other sessions need it: "low", "medium" (default) or "high" (would break their work if missed).
    #[serde(default = "default_importance")]
    #[schemars(schema_with = "importance_schema")]
    pub importance: Option<String>,
    /// Repository-relative paths of the files it concerns (at most 50).
    pub files: Option<Vec<String>>,
}

/// Arguments of `record_decision`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RecordDecisionArgs {
    /// What was decided (at most 8,000 characters).
    pub decision: String,
    /// Why (at most 8,000 characters).
    pub rationale: String,
    /// What else was considered, one option per item (at most 20 items of 2,000 characters).
    pub alternatives: Option<Vec<String>>,
}

/// Arguments of `read_feature_context`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ReadFeatureContextArgs {
    /// Text to search for (case-insensitive, at most 1,000 characters); leave it out for the whole overview.
    pub query: Option<String>,
}

/// Arguments of `mark_key_file`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct MarkKeyFileArgs {
    /// Path relative to the repository root, for example "src/auth/mod.rs".
    pub path: String,
    /// Why the file matters (at most 4,000 characters); leave it out to keep the current note.
    pub note: Option<String>,
}

/// Arguments of `request_session`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RequestSessionArgs {
    /// Short title of the new session's work (at most 200 characters).
    pub title: String,
    /// What the new session should do and what it must not do (at most 20,000 characters).
    pub scope: String,
    /// Whether the new session must wait until this session is completed (default false).
    pub depends_on_current: Option<bool>,
}

/// What a missing importance means; also the schema's `default`.
fn default_importance() -> Option<String> {
    Some(Importance::Medium.as_str().to_owned())
}

/// The importance argument's schema, written out so that clients see a
/// plain string enum (no `$ref`, which some clients resolve poorly).
fn importance_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["low", "medium", "high"],
        "default": "medium"
    })
}

/// One entry of `list_sessions`.
#[derive(Debug, Clone, Serialize)]
struct SessionSummary<'a> {
    id: &'a str,
    current: bool,
    title: &'a str,
    status: &'a str,
    depends_on: &'a [String],
    files_changed: &'a [String],
    latest_result: Option<ResultSummary<'a>>,
}

/// How a session's latest finished prompt ended.
#[derive(Debug, Clone, Serialize)]
struct ResultSummary<'a> {
    queue_entry_id: &'a str,
    status: &'a str,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<i64>,
}

impl FeatureTools {
    /// Tools over `replica`; they answer [`NOT_LOADED`] until it is loaded.
    pub fn new(replica: SharedReplica) -> Self {
        FeatureTools {
            replica,
            bound: None,
            server: None,
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    /// Tools of a sidecar that may be bound to its session later: they
    /// answer [`NOT_BOUND`] until `bound` names a session, then
    /// [`NOT_LOADED`] until `replica` is loaded.
    pub fn with_binding(
        replica: SharedReplica,
        bound: tokio::sync::watch::Receiver<Option<Bound>>,
    ) -> Self {
        FeatureTools {
            bound: Some(bound),
            ..FeatureTools::new(replica)
        }
    }

    /// The same tools, able to ask the server (for `create_pull_request`).
    pub fn with_server(self, server: crate::credential::Credentials) -> Self {
        FeatureTools {
            server: Some(server),
            ..self
        }
    }

    /// The replica, if loaded. Cloned out so no borrow of the watch channel
    /// is held across an await.
    fn loaded(&self) -> Result<Replica, String> {
        if let Some(replica) = self.replica.borrow().clone() {
            return Ok(replica);
        }
        if self.bound.as_ref().is_some_and(|b| b.borrow().is_none()) {
            return Err(NOT_BOUND.to_owned());
        }
        Err(NOT_LOADED.to_owned())
    }

    async fn read_doc(&self) -> Result<(Replica, FeatureDoc), String> {
        let replica = self.loaded()?;
        let doc = replica.read().await.map_err(replica_error)?;
        Ok((replica, doc))
    }
}

#[tool_router]
impl FeatureTools {
    /// Record a learning for the other sessions.
    #[tool(
        name = "add_learning",
        description = "Record something other sessions of this feature should know: a fact about \
            the codebase, a pitfall, a convention, a command that works, a constraint you \
            discovered. It goes into the shared feature context that every session of the \
            feature reads. Keep it short, specific and self-contained, and name the files it \
            concerns. Use importance \"high\" only for what would break other sessions' work if \
            they missed it. For a choice between options use record_decision instead; do not \
            use it for progress reports."
    )]
    pub async fn add_learning(&self, Parameters(args): Parameters<AddLearningArgs>) -> ToolResult {
        let text = required_text("text", &args.text, MAX_LEARNING_CHARS)?;
        let importance = importance(args.importance.as_deref())?;
        let files = paths("files", args.files.unwrap_or_default())?;
        let replica = self.loaded()?;
        let id = ids::new_learning_id();
        let new = NewLearning {
            id: id.clone(),
            text,
            author: replica.author(),
            from_session: Some(replica.session_id().to_owned()),
            importance: importance.clone(),
            files,
            created_at: unix_ms_now(),
        };
        replica
            .write(&format!("agent: add learning {id}"), move |tx| {
                feature::add_learning(tx, &new)
            })
            .await
            .map_err(replica_error)?;
        Ok(format!(
            "Recorded learning {id} (importance {importance}). Every session of this feature \
             will see it in its feature context."
        ))
    }

    /// Record a decision with its rationale.
    #[tool(
        name = "record_decision",
        description = "Record a decision other sessions of this feature must know or follow (an \
            API shape, a library, a data format, a naming rule, an approach), with why it was \
            taken and which alternatives were rejected, so that no session decides it again \
            differently. It goes into the shared feature context."
    )]
    pub async fn record_decision(
        &self,
        Parameters(args): Parameters<RecordDecisionArgs>,
    ) -> ToolResult {
        let decision = required_text("decision", &args.decision, MAX_DECISION_CHARS)?;
        let rationale = required_text("rationale", &args.rationale, MAX_RATIONALE_CHARS)?;
        let alternatives = alternatives(args.alternatives.unwrap_or_default())?;
        let replica = self.loaded()?;
        let id = ids::new_decision_id();
        let new = NewDecision {
            id: id.clone(),
            decision,
            rationale,
            alternatives,
            author: replica.author(),
            from_session: Some(replica.session_id().to_owned()),
            created_at: unix_ms_now(),
        };
        replica
            .write(&format!("agent: record decision {id}"), move |tx| {
                feature::add_decision(tx, &new)
            })
            .await
            .map_err(replica_error)?;
        Ok(format!(
            "Recorded decision {id}. Every session of this feature will see it in its feature \
             context."
        ))
    }

    /// The context overview, or a search of it.
    #[tool(
        name = "read_feature_context",
        description = "Read the shared context of this feature: its description, learnings, \
            decisions, key files, and the other sessions with their status and latest results. \
            Without a query you get the current overview (the same as your feature context \
            file). With a query you get every learning, decision, key file and session whose \
            text contains it (case-insensitive), including old entries the overview only \
            summarises. Search before you start work in an area others may have touched.",
        annotations(read_only_hint = true)
    )]
    pub async fn read_feature_context(
        &self,
        Parameters(args): Parameters<ReadFeatureContextArgs>,
    ) -> ToolResult {
        let query = match args.query.as_deref().map(str::trim) {
            Some(q) if !q.is_empty() => {
                check_len("query", q, MAX_QUERY_CHARS)?;
                Some(q.to_owned())
            }
            _ => None,
        };
        let (replica, doc) = self.read_doc().await?;
        Ok(match query {
            None => context::render(&doc, replica.session_id()),
            Some(query) => search(&doc, &query),
        })
    }

    /// Mark a file as important to the feature.
    #[tool(
        name = "mark_key_file",
        description = "Mark a file that matters to this feature (a central module, the place \
            where something is implemented, a config others must not break), with a note \
            saying why. The path is relative to the repository root. Marking a file again \
            updates its note and records that this session marked it too."
    )]
    pub async fn mark_key_file(&self, Parameters(args): Parameters<MarkKeyFileArgs>) -> ToolResult {
        let path = repo_path("path", &args.path)?;
        let note = match args.note.as_deref().map(str::trim) {
            Some(note) if !note.is_empty() => {
                check_len("note", note, MAX_NOTE_CHARS)?;
                Some(note.to_owned())
            }
            _ => None,
        };
        let replica = self.loaded()?;
        let session_id = replica.session_id().to_owned();
        let key = path.clone();
        replica
            .write("agent: mark key file", move |tx| {
                feature::mark_key_file(tx, &key, note.as_deref(), Some(&session_id))
            })
            .await
            .map_err(replica_error)?;
        Ok(format!("Marked {path} as a key file of this feature."))
    }

    /// Every session of the feature, as JSON.
    #[tool(
        name = "list_sessions",
        description = "List every session of this feature as JSON: id, title, status, \
            depends_on, files_changed and the result of its latest finished prompt; yours has \
            \"current\": true. Use it to see who works on what before you touch shared code.",
        annotations(read_only_hint = true)
    )]
    pub async fn list_sessions(&self) -> ToolResult {
        let (replica, doc) = self.read_doc().await?;
        let mut sessions: Vec<(&String, &feature::Session)> = doc.sessions.iter().collect();
        sessions.sort_by_key(|(id, s)| (s.created_at, id.as_str()));
        let list: Vec<SessionSummary<'_>> = sessions
            .into_iter()
            .map(|(id, s)| SessionSummary {
                id,
                current: id.as_str() == replica.session_id(),
                title: &s.title,
                status: s.status.as_str(),
                depends_on: &s.depends_on,
                files_changed: &s.files_changed,
                latest_result: context::latest_result(&doc, id).map(result_summary),
            })
            .collect();
        serde_json::to_string_pretty(&list).map_err(|e| format!("cannot encode the sessions: {e}"))
    }

    /// Ask for a new session of the feature.
    #[tool(
        name = "request_session",
        description = "Ask for a new agent session on this feature, for work outside your scope \
            or that can run in parallel with yours. Give a short title and a precise scope \
            (what to do, what not to do, which files). Set depends_on_current to true if the \
            new session must wait until this session is completed. The session is created \
            pending and starts only once its dependencies are completed."
    )]
    pub async fn request_session(
        &self,
        Parameters(args): Parameters<RequestSessionArgs>,
    ) -> ToolResult {
        let title = required_text("title", &args.title, MAX_TITLE_CHARS)?;
        let scope = required_text("scope", &args.scope, MAX_SCOPE_CHARS)?;
        let replica = self.loaded()?;
        let session_id = ids::new_session_id();
        let depends_on = if args.depends_on_current.unwrap_or(false) {
            vec![replica.session_id().to_owned()]
        } else {
            Vec::new()
        };
        let new = NewSession {
            session_id: session_id.clone(),
            title: title.clone(),
            scope,
            depends_on: depends_on.clone(),
            created_by: replica.author(),
            created_at: unix_ms_now(),
        };
        replica
            .write(&format!("agent: request session {session_id}"), move |tx| {
                feature::add_session(tx, &new).map(|_| ())
            })
            .await
            .map_err(replica_error)?;
        let wait = if depends_on.is_empty() {
            "It has no dependencies; it stays pending until Canopy starts it.".to_owned()
        } else {
            format!(
                "It stays pending until its dependencies are completed: {}.",
                depends_on.join(", ")
            )
        };
        Ok(format!(
            "Requested session {session_id} (\"{}\"). {wait}",
            context::one_line(&title, MAX_TITLE_CHARS)
        ))
    }

    /// Push the session's branch and open (or update) its pull request.
    #[tool(
        name = "create_pull_request",
        description = "Push this session's branch and open its pull request on GitHub (or update \
            the one it has), as the person who asked for the work, with a body that lists the \
            prompts, learnings and decisions of this session. Only what is committed is pushed: \
            Canopy commits your work when each prompt ends, and pushes later commits to the \
            pull request by itself. Returns the pull request's URL, or a compare link when \
            nobody can open it."
    )]
    pub async fn create_pull_request(&self) -> ToolResult {
        let replica = self.loaded()?;
        let source = self
            .server
            .as_ref()
            .and_then(crate::credential::Credentials::source)
            .ok_or_else(|| NOT_BOUND.to_owned())?;
        let url = format!(
            "{}/api/features/{}/sessions/{}/pr",
            source.server_url.trim_end_matches('/'),
            source.feature_id,
            replica.session_id()
        );
        let resp = reqwest::Client::new()
            .post(&url)
            .timeout(std::time::Duration::from_secs(240))
            .bearer_auth(&source.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach Canopy: {}", e.without_url()))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "the pull request was not opened: {}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            ));
        }
        Ok(
            match (body["pr"]["url"].as_str(), body["compare_url"].as_str()) {
                (Some(url), _) => format!(
                    "Pull request #{} {}: {url}",
                    body["pr"]["number"],
                    if body["created"] == true {
                        "opened"
                    } else {
                        "updated"
                    }
                ),
                (None, Some(compare)) => format!(
                    "The branch {} is pushed, but nobody could open the pull request ({}). It can be \
                 opened here: {compare}",
                    body["branch"].as_str().unwrap_or_default(),
                    body["reason"].as_str().unwrap_or("no GitHub credentials")
                ),
                _ => "The server gave no pull request.".to_owned(),
            },
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FeatureTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "canopy-feature",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tools of the Canopy feature you work on. Several agent sessions work on this \
                 feature in parallel; these tools share what you learn and decide with them \
                 (add_learning, record_decision, mark_key_file), show what they learned and do \
                 (read_feature_context, list_sessions), ask for more sessions \
                 (request_session), and open the session's pull request (create_pull_request).",
            )
    }
}

/// The MCP endpoint at `/mcp` (streamable HTTP, stateful sessions).
///
/// Sessions never expire on idleness: an agent may wait hours between
/// prompts, and an MCP client that finds its session gone does not always
/// start a new one, which would leave the agent without its tools. The
/// sessions are few (one per OpenCode process), so keeping them is cheap.
/// rmcp's default host check (loopback names only) stays on, because the
/// agent reaches the sidecar over loopback.
pub fn router(tools: FeatureTools) -> axum::Router {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = None;
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(sessions),
        StreamableHttpServerConfig::default(),
    );
    axum::Router::new().nest_service("/mcp", service)
}

fn replica_error(error: ReplicaError) -> String {
    match error {
        ReplicaError::Schema(e) => format!("the feature document refused the change: {e}"),
        ReplicaError::Stopped => "the sidecar is stopping; nothing was recorded".to_owned(),
    }
}

/// `value` trimmed, refused if blank or longer than `max` characters.
fn required_text(field: &str, value: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    check_len(field, value, max)?;
    Ok(value.to_owned())
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), String> {
    // Count only as far as needed: a 1 MB argument is refused just as well.
    if value.chars().nth(max).is_some() {
        let len = value.chars().count();
        return Err(format!(
            "{field}: {len} characters is too long; the limit is {max} characters"
        ));
    }
    Ok(())
}

fn importance(value: Option<&str>) -> Result<Importance, String> {
    let Some(value) = value else {
        return Ok(Importance::Medium);
    };
    match Importance::from(value.trim().to_ascii_lowercase().as_str()) {
        Importance::Unknown(_) => Err(format!(
            "importance: {:?} is not allowed; use {ALLOWED_IMPORTANCE}",
            context::truncate(value, 50)
        )),
        known => Ok(known),
    }
}

fn alternatives(values: Vec<String>) -> Result<Vec<String>, String> {
    let values: Vec<String> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if values.len() > MAX_ALTERNATIVES {
        return Err(format!(
            "alternatives: {} items is too many; the limit is {MAX_ALTERNATIVES}",
            values.len()
        ));
    }
    for (i, value) in values.iter().enumerate() {
        check_len(&format!("alternatives[{i}]"), value, MAX_ALTERNATIVE_CHARS)?;
    }
    Ok(values)
}

fn paths(field: &str, values: Vec<String>) -> Result<Vec<String>, String> {
    if values.len() > MAX_FILES {
        return Err(format!(
            "{field}: {} paths is too many; the limit is {MAX_FILES}",
            values.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let path = repo_path(&format!("{field}[{i}]"), value)?;
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// A repository-relative path, normalised (no `.` or empty components) so
/// that one file has one key. Absolute paths and `..` are refused: the
/// feature's files are the repository's, and every session's checkout
/// lives somewhere else.
fn repo_path(field: &str, value: &str) -> Result<String, String> {
    let path = value.trim();
    if path.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "{field}: {} bytes is too long; the limit is {MAX_PATH_BYTES} bytes",
            path.len()
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{field}: must not contain control characters"));
    }
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with(['/', '\\', '~']) || drive {
        return Err(format!(
            "{field}: {path:?} is not relative; give the path from the repository root, \
             for example \"src/main.rs\""
        ));
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!(
            "{field}: {path:?} contains \"..\"; give a path inside the repository, from its root"
        ));
    }
    let normalised = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/");
    if normalised.is_empty() {
        return Err(format!(
            "{field}: {path:?} is the repository root, not a file"
        ));
    }
    Ok(normalised)
}

fn result_summary(entry: &QueueEntry) -> ResultSummary<'_> {
    ResultSummary {
        queue_entry_id: &entry.id,
        status: entry.status.as_str(),
        prompt: context::one_line(
            entry
                .text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(""),
            context::MAX_LINE_CHARS,
        ),
        error: entry.error.as_deref(),
        commit: entry.commit.as_deref(),
        finished_at: entry.finished_at,
    }
}

/// Everything in the document whose text contains `query`
/// (case-insensitive), as markdown, within [`MAX_SEARCH_BYTES`].
fn search(doc: &FeatureDoc, query: &str) -> String {
    let needle = query.to_lowercase();
    let hit = |s: &str| s.to_lowercase().contains(&needle);

    let mut learnings: Vec<(usize, &feature::Learning)> = doc
        .learnings
        .iter()
        .enumerate()
        .filter(|(_, l)| hit(&l.text) || l.files.iter().any(|f| hit(f)) || hit(&l.author))
        .collect();
    learnings.sort_by_key(|(i, l)| std::cmp::Reverse((l.created_at, *i)));
    let mut decisions: Vec<(usize, &feature::Decision)> = doc
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            hit(&d.decision) || hit(&d.rationale) || d.alternatives.iter().any(|a| hit(a))
        })
        .collect();
    decisions.sort_by_key(|(i, d)| std::cmp::Reverse((d.created_at, *i)));
    let key_files: Vec<(&String, &feature::KeyFile)> = doc
        .key_files
        .iter()
        .filter(|(path, k)| hit(path) || hit(&k.note))
        .collect();
    let mut sessions: Vec<(&String, &feature::Session)> = doc
        .sessions
        .iter()
        .filter(|(id, s)| hit(id) || hit(&s.title) || hit(&s.scope))
        .collect();
    sessions.sort_by_key(|(id, s)| (s.created_at, id.as_str()));

    let shown_query = context::one_line(query, 100);
    let total = learnings.len() + decisions.len() + key_files.len() + sessions.len();
    if total == 0 {
        return format!(
            "Nothing in the feature context matches \"{shown_query}\". Try a shorter or \
             different query, or call read_feature_context without a query for the overview."
        );
    }
    let mut out = format!(
        "# Feature context matching \"{shown_query}\"\n\n{total} match{}, newest first.\n\n",
        if total == 1 { "" } else { "es" }
    );
    section(&mut out, "Learnings", &learnings, |out, (_, l)| {
        context::render_learning(out, l)
    });
    section(&mut out, "Decisions", &decisions, |out, (_, d)| {
        context::render_decision(out, d)
    });
    section(&mut out, "Key files", &key_files, |out, (path, k)| {
        context::render_key_file(out, path, k);
    });
    section(&mut out, "Sessions", &sessions, |out, (id, s)| {
        let mut body = String::new();
        context::render_session(&mut body, doc, id, s);
        // Sessions render with a level-3 heading; nest them under ours.
        out.push_str(&body.replacen("### ", "#### ", 1));
    });
    out
}

/// One kind of matches: a heading, up to [`MAX_SEARCH_MATCHES`] entries
/// while the answer stays within [`MAX_SEARCH_BYTES`], then a count of the
/// rest.
fn section<T>(out: &mut String, title: &str, items: &[T], render: impl Fn(&mut String, &T)) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("## {title} ({})\n\n", items.len()));
    let mut shown = 0;
    for item in items.iter().take(MAX_SEARCH_MATCHES) {
        if shown > 0 && out.len() > MAX_SEARCH_BYTES {
            break;
        }
        render(out, item);
        shown += 1;
    }
    let rest = items.len() - shown;
    if rest > 0 {
        out.push_str(&format!(
            "- …and {rest} more; use a more specific query to see them\n"
        ));
    }
    out.push('\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use automerge::Automerge;
    use canopy_protocol::feature::{NewFeature, SessionStatus};
    use canopy_protocol::{ChangeMeta, ids};
    use futures::StreamExt;
    use serde_json::{Value, json};
    use tokio::sync::watch;

    use super::*;

    /// A loaded replica of a new feature with one session (ours), and the
    /// tools over it. The repo and the sender must outlive the test.
    struct Fixture {
        repo: samod::Repo,
        _tx: watch::Sender<Option<Replica>>,
        replica: Replica,
        tools: FeatureTools,
    }

    async fn fixture() -> Fixture {
        let session_id = ids::new_session_id();
        let mut doc: Automerge = feature::new_feature_document(&NewFeature {
            feature_id: ids::new_feature_id(),
            title: "Add OAuth login".into(),
            description: "Sign in with GitHub.".into(),
            repo: None,
            created_by: "alice".into(),
            created_by_name: "Alice".into(),
            created_at: unix_ms_now(),
        })
        .unwrap();
        let sid = session_id.clone();
        doc.transact_with(
            |_| ChangeMeta::now("add session").commit_options(),
            move |tx| {
                feature::add_session(
                    tx,
                    &NewSession {
                        session_id: sid,
                        title: "Provider backend".into(),
                        scope: "The token exchange.".into(),
                        depends_on: vec![],
                        created_by: "alice".into(),
                        created_at: unix_ms_now(),
                    },
                )
            },
        )
        .map_err(|f| f.error)
        .unwrap();
        let feature_id = feature::read(&doc).unwrap().feature_id;
        let repo = samod::Repo::build_tokio().load().await;
        let handle = repo.create(doc).await.unwrap();
        let replica = Replica::new(handle, &feature_id, &session_id);
        let (tx, rx) = watch::channel(Some(replica.clone()));
        Fixture {
            repo,
            _tx: tx,
            replica,
            tools: FeatureTools::new(rx),
        }
    }

    impl Fixture {
        async fn doc(&self) -> FeatureDoc {
            self.replica.read().await.unwrap()
        }

        async fn stop(self) {
            self.repo.stop().await;
        }
    }

    fn learning(text: &str) -> AddLearningArgs {
        AddLearningArgs {
            text: text.into(),
            ..AddLearningArgs::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_learning_records_an_attributed_learning() {
        let f = fixture().await;
        let sid = f.replica.session_id().to_owned();
        let answer = f
            .tools
            .add_learning(Parameters(AddLearningArgs {
                text: "  The provider needs PKCE.\n".into(),
                importance: Some("High".into()),
                files: Some(vec![
                    "./src/auth.rs".into(),
                    "src//auth.rs".into(),
                    "src/oauth.rs".into(),
                ]),
            }))
            .await
            .unwrap();
        assert!(answer.contains("Recorded learning lrn_"), "{answer}");
        let doc = f.doc().await;
        assert_eq!(doc.learnings.len(), 1);
        let l = &doc.learnings[0];
        assert_eq!(l.text, "The provider needs PKCE.");
        assert_eq!(l.author, format!("agent:{sid}"));
        assert_eq!(l.from_session.as_deref(), Some(sid.as_str()));
        assert_eq!(l.importance, Importance::High);
        assert_eq!(l.files, vec!["src/auth.rs", "src/oauth.rs"]);
        assert!(ids::is_valid_id(ids::LEARNING_PREFIX, &l.id));
        assert!(answer.contains(&l.id));
        assert!(l.created_at > 0);

        // Importance defaults to medium.
        f.tools
            .add_learning(Parameters(learning("Run the tests with --release.")))
            .await
            .unwrap();
        assert_eq!(f.doc().await.learnings[1].importance, Importance::Medium);
        f.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_learning_refusals_write_nothing() {
        let f = fixture().await;
        let huge = "x".repeat(1_000_000);
        let cases: Vec<(AddLearningArgs, &str)> = vec![
            (
                learning(&huge),
                "text: 1000000 characters is too long; the limit is 8000",
            ),
            (learning("   \n "), "text: must not be empty"),
            (
                AddLearningArgs {
                    importance: Some("urgent".into()),
                    ..learning("ok")
                },
                "importance: \"urgent\" is not allowed",
            ),
            (
                AddLearningArgs {
                    files: Some(vec!["/etc/passwd".into()]),
                    ..learning("ok")
                },
                "files[0]: \"/etc/passwd\" is not relative",
            ),
            (
                AddLearningArgs {
                    files: Some(vec!["src/a.rs".into(), "src/../../x".into()]),
                    ..learning("ok")
                },
                "files[1]: \"src/../../x\" contains \"..\"",
            ),
            (
                AddLearningArgs {
                    files: Some(vec![String::new()]),
                    ..learning("ok")
                },
                "files[0]: must not be empty",
            ),
            (
                AddLearningArgs {
                    files: Some(vec!["a".repeat(1_025)]),
                    ..learning("ok")
                },
                "files[0]: 1025 bytes is too long; the limit is 1024 bytes",
            ),
            (
                AddLearningArgs {
                    files: Some((0..51).map(|i| format!("f{i}")).collect()),
                    ..learning("ok")
                },
                "files: 51 paths is too many; the limit is 50",
            ),
        ];
        for (args, expected) in cases {
            let error = f.tools.add_learning(Parameters(args)).await.unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        assert_eq!(f.doc().await.learnings.len(), 0);
        f.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn record_decision_and_its_refusals() {
        let f = fixture().await;
        let sid = f.replica.session_id().to_owned();
        let args = |alternatives: Vec<String>| RecordDecisionArgs {
            decision: "Use the oauth2 crate".into(),
            rationale: "Maintained, and supports PKCE.".into(),
            alternatives: Some(alternatives),
        };
        let answer = f
            .tools
            .record_decision(Parameters(args(vec![
                "Roll our own".into(),
                " ".into(),
                "openidconnect".into(),
            ])))
            .await
            .unwrap();
        assert!(answer.contains("Recorded decision dec_"), "{answer}");
        let doc = f.doc().await;
        let d = &doc.decisions[0];
        assert_eq!(d.decision, "Use the oauth2 crate");
        assert_eq!(d.rationale, "Maintained, and supports PKCE.");
        assert_eq!(d.alternatives, vec!["Roll our own", "openidconnect"]);
        assert_eq!(d.author, format!("agent:{sid}"));
        assert_eq!(d.from_session.as_deref(), Some(sid.as_str()));

        let too_many = (0..21).map(|i| format!("option {i}")).collect();
        let error = f
            .tools
            .record_decision(Parameters(args(too_many)))
            .await
            .unwrap_err();
        assert!(
            error.contains("alternatives: 21 items is too many; the limit is 20"),
            "{error}"
        );
        let error = f
            .tools
            .record_decision(Parameters(args(vec!["y".repeat(2_001)])))
            .await
            .unwrap_err();
        assert!(
            error.contains("alternatives[0]: 2001 characters is too long"),
            "{error}"
        );
        let error = f
            .tools
            .record_decision(Parameters(RecordDecisionArgs {
                rationale: String::new(),
                ..args(vec![])
            }))
            .await
            .unwrap_err();
        assert!(error.contains("rationale: must not be empty"), "{error}");
        let error = f
            .tools
            .record_decision(Parameters(RecordDecisionArgs {
                decision: "d".repeat(8_001),
                ..args(vec![])
            }))
            .await
            .unwrap_err();
        assert!(error.contains("decision: 8001 characters is too long; the limit is 8000"));
        assert_eq!(f.doc().await.decisions.len(), 1);
        f.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mark_key_file_and_its_refusals() {
        let f = fixture().await;
        let sid = f.replica.session_id().to_owned();
        let mark = |path: &str, note: Option<&str>| MarkKeyFileArgs {
            path: path.into(),
            note: note.map(str::to_owned),
        };
        f.tools
            .mark_key_file(Parameters(mark("./src/auth/mod.rs", Some("Entry point."))))
            .await
            .unwrap();
        // Marking again without a note keeps the note.
        f.tools
            .mark_key_file(Parameters(mark("src/auth/mod.rs", None)))
            .await
            .unwrap();
        let doc = f.doc().await;
        let k = &doc.key_files["src/auth/mod.rs"];
        assert_eq!(k.note, "Entry point.");
        assert_eq!(k.sessions, vec![sid]);

        for (path, note, expected) in [
            (
                "/work/repo/src/a.rs",
                None,
                "path: \"/work/repo/src/a.rs\" is not relative",
            ),
            ("C:\\src\\a.rs", None, "is not relative"),
            ("~/a.rs", None, "is not relative"),
            ("src/../../etc/passwd", None, "contains \"..\""),
            ("..", None, "contains \"..\""),
            ("", None, "path: must not be empty"),
            ("./", None, "is the repository root"),
            ("a\nb", None, "control characters"),
        ] {
            let error = f
                .tools
                .mark_key_file(Parameters(mark(path, note)))
                .await
                .unwrap_err();
            assert!(
                error.contains(expected),
                "{path:?}: {error:?} lacks {expected:?}"
            );
        }
        let long_note = "n".repeat(4_001);
        let error = f
            .tools
            .mark_key_file(Parameters(mark("src/x.rs", Some(&long_note))))
            .await
            .unwrap_err();
        assert!(error.contains("note: 4001 characters is too long; the limit is 4000"));
        assert_eq!(f.doc().await.key_files.len(), 1);
        f.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_feature_context_overview_and_search() {
        let f = fixture().await;
        f.tools
            .add_learning(Parameters(learning(
                "Tokens are cached in REDIS for an hour.",
            )))
            .await
            .unwrap();
        f.tools
            .record_decision(Parameters(RecordDecisionArgs {
                decision: "Store sessions server-side".into(),
                rationale: "Revocation must be instant; redis makes that cheap.".into(),
                alternatives: None,
            }))
            .await
            .unwrap();
        f.tools
            .mark_key_file(Parameters(MarkKeyFileArgs {
                path: "src/cache/redis.rs".into(),
                note: None,
            }))
            .await
            .unwrap();

        let overview = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs::default()))
            .await
            .unwrap();
        assert_eq!(
            overview,
            context::render(&f.doc().await, f.replica.session_id())
        );
        // A blank query is no query.
        let blank = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs {
                query: Some("  ".into()),
            }))
            .await
            .unwrap();
        assert_eq!(blank, overview);

        let found = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs {
                query: Some("Redis".into()),
            }))
            .await
            .unwrap();
        assert!(found.contains("3 matches"), "{found}");
        assert!(found.contains("Tokens are cached in REDIS"), "{found}");
        assert!(found.contains("Store sessions server-side"), "{found}");
        assert!(found.contains("`src/cache/redis.rs`"), "{found}");

        let session = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs {
                query: Some("token exchange".into()),
            }))
            .await
            .unwrap();
        assert!(session.contains("#### Provider backend"), "{session}");

        let nothing = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs {
                query: Some("kubernetes".into()),
            }))
            .await
            .unwrap();
        assert!(
            nothing.starts_with("Nothing in the feature context matches \"kubernetes\""),
            "{nothing}"
        );

        let error = f
            .tools
            .read_feature_context(Parameters(ReadFeatureContextArgs {
                query: Some("q".repeat(1_001)),
            }))
            .await
            .unwrap_err();
        assert!(error.contains("query: 1001 characters is too long; the limit is 1000"));
        f.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_session_and_list_sessions() {
        let f = fixture().await;
        let sid = f.replica.session_id().to_owned();
        let answer = f
            .tools
            .request_session(Parameters(RequestSessionArgs {
                title: "Login page".into(),
                scope: "Build the login page. Do not touch the backend.".into(),
                depends_on_current: Some(true),
            }))
            .await
            .unwrap();
        assert!(answer.contains("stays pending until its dependencies are completed"));
        assert!(answer.contains(&sid), "{answer}");
        let new_id = answer
            .split_whitespace()
            .find(|w| w.starts_with("ses_") && *w != sid)
            .unwrap()
            .to_owned();
        let doc = f.doc().await;
        let s = &doc.sessions[&new_id];
        assert_eq!(s.title, "Login page");
        assert_eq!(s.status, SessionStatus::Pending);
        assert_eq!(s.depends_on, vec![sid.clone()]);
        assert_eq!(s.created_by, format!("agent:{sid}"));

        let free = f
            .tools
            .request_session(Parameters(RequestSessionArgs {
                title: "Docs".into(),
                scope: "Document the flow.".into(),
                depends_on_current: None,
            }))
            .await
            .unwrap();
        assert!(free.contains("no dependencies"), "{free}");

        for (args, expected) in [
            (
                RequestSessionArgs {
                    title: "t".repeat(201),
                    scope: "s".into(),
                    depends_on_current: None,
                },
                "title: 201 characters is too long; the limit is 200",
            ),
            (
                RequestSessionArgs {
                    title: "t".into(),
                    scope: "s".repeat(20_001),
                    depends_on_current: None,
                },
                "scope: 20001 characters is too long; the limit is 20000",
            ),
            (
                RequestSessionArgs {
                    title: "t".into(),
                    scope: " ".into(),
                    depends_on_current: None,
                },
                "scope: must not be empty",
            ),
        ] {
            let error = f.tools.request_session(Parameters(args)).await.unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        assert_eq!(f.doc().await.sessions.len(), 3);

        let listed: Value = serde_json::from_str(&f.tools.list_sessions().await.unwrap()).unwrap();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 3);
        let me = listed.iter().find(|s| s["id"] == sid.as_str()).unwrap();
        assert_eq!(me["current"], true);
        assert_eq!(me["title"], "Provider backend");
        assert_eq!(me["latest_result"], Value::Null);
        let other = listed.iter().find(|s| s["id"] == new_id.as_str()).unwrap();
        assert_eq!(other["current"], false);
        assert_eq!(other["status"], "pending");
        assert_eq!(other["depends_on"], json!([sid]));
        assert_eq!(other["files_changed"], json!([]));
        f.stop().await;
    }

    #[tokio::test]
    async fn tools_wait_for_the_document() {
        let (_tx, rx) = watch::channel(None);
        let tools = FeatureTools::new(rx);
        let answers = [
            tools.add_learning(Parameters(learning("x"))).await,
            tools
                .record_decision(Parameters(RecordDecisionArgs {
                    decision: "d".into(),
                    rationale: "r".into(),
                    alternatives: None,
                }))
                .await,
            tools
                .read_feature_context(Parameters(ReadFeatureContextArgs::default()))
                .await,
            tools
                .mark_key_file(Parameters(MarkKeyFileArgs {
                    path: "a.rs".into(),
                    note: None,
                }))
                .await,
            tools.list_sessions().await,
            tools
                .request_session(Parameters(RequestSessionArgs {
                    title: "t".into(),
                    scope: "s".into(),
                    depends_on_current: None,
                }))
                .await,
        ];
        for answer in answers {
            assert_eq!(answer.unwrap_err(), NOT_LOADED);
        }
    }

    #[tokio::test]
    async fn tools_of_an_unbound_sandbox_say_so() {
        let (_tx, rx) = watch::channel(None);
        let (bound_tx, bound_rx) = watch::channel(None);
        let tools = FeatureTools::with_binding(rx, bound_rx);
        let answer = tools.add_learning(Parameters(learning("x"))).await;
        assert_eq!(answer.unwrap_err(), NOT_BOUND);
        assert_eq!(tools.list_sessions().await.unwrap_err(), NOT_BOUND);
        bound_tx.send_replace(Some(Bound {
            feature_id: ids::new_feature_id(),
            session_id: ids::new_session_id(),
            workspace: None,
        }));
        // Bound, the document not loaded yet.
        assert_eq!(tools.list_sessions().await.unwrap_err(), NOT_LOADED);
    }

    #[test]
    fn schemas_are_plain() {
        let tools = FeatureTools::tool_router().list_all();
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "add_learning",
                "create_pull_request",
                "list_sessions",
                "mark_key_file",
                "read_feature_context",
                "record_decision",
                "request_session"
            ]
        );
        let add = tools.iter().find(|t| t.name == "add_learning").unwrap();
        let schema = Value::Object((*add.input_schema).clone());
        assert_eq!(schema["required"], json!(["text"]), "{schema}");
        assert_eq!(
            schema["properties"]["importance"]["enum"],
            json!(["low", "medium", "high"]),
            "{schema}"
        );
        assert!(!schema.to_string().contains("$ref"), "{schema}");
        for tool in &tools {
            assert!(
                tool.description.as_deref().unwrap_or("").len() > 80,
                "{}",
                tool.name
            );
        }
    }

    /// POST one JSON-RPC message and return the HTTP status, the session
    /// header and the answer to `id` (if the message was a request), read
    /// from a JSON body or from an SSE stream.
    async fn post(
        client: &reqwest::Client,
        url: &str,
        session: Option<&str>,
        body: Value,
    ) -> (reqwest::StatusCode, Option<String>, Option<Value>) {
        let mut request = client
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(session) = session {
            request = request
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", "2025-06-18");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let Some(id) = body.get("id").cloned() else {
            return (status, session, None);
        };
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let text = response.text().await.unwrap();
            return (status, session, serde_json::from_str(&text).ok());
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            let normalised = buffer.replace("\r\n", "\n");
            for event in normalised.split("\n\n") {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if let Ok(message) = serde_json::from_str::<Value>(&data.join("\n"))
                    && message.get("id") == Some(&id)
                {
                    return (status, session, Some(message));
                }
            }
        }
        (status, session, None)
    }

    fn call(id: u64, name: &str, arguments: Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": { "name": name, "arguments": arguments }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mcp_over_http() {
        let f = fixture().await;
        let sid = f.replica.session_id().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let server = tokio::spawn(axum::serve(listener, router(f.tools.clone())).into_future());
        let client = reqwest::Client::new();

        let exchange = async {
            let (status, session, answer) = post(
                &client,
                &url,
                None,
                json!({
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": { "name": "test", "version": "1.0" }
                    }
                }),
            )
            .await;
            assert!(status.is_success(), "{status}");
            let answer = answer.unwrap();
            assert_eq!(answer["result"]["serverInfo"]["name"], "canopy-feature");
            let session = session.unwrap();
            let s = Some(session.as_str());

            let (status, _, _) = post(
                &client,
                &url,
                s,
                json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
            )
            .await;
            assert!(status.is_success(), "{status}");

            let (_, _, answer) = post(
                &client,
                &url,
                s,
                json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }),
            )
            .await;
            let answer = answer.unwrap();
            let mut names: Vec<String> = answer["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "add_learning",
                    "create_pull_request",
                    "list_sessions",
                    "mark_key_file",
                    "read_feature_context",
                    "record_decision",
                    "request_session"
                ]
            );

            let (_, _, answer) = post(
                &client,
                &url,
                s,
                call(
                    3,
                    "add_learning",
                    json!({ "text": "Use PKCE everywhere.", "importance": "high" }),
                ),
            )
            .await;
            let answer = answer.unwrap();
            assert_ne!(answer["result"]["isError"], true, "{answer}");
            let text = answer["result"]["content"][0]["text"].as_str().unwrap();
            assert!(text.contains("Recorded learning lrn_"), "{text}");

            // Wrong JSON type: an error answer, not a crash.
            let (_, _, answer) = post(
                &client,
                &url,
                s,
                call(4, "add_learning", json!({ "text": 5 })),
            )
            .await;
            let answer = answer.unwrap();
            assert!(
                answer.get("error").is_some() || answer["result"]["isError"] == true,
                "{answer}"
            );

            // Too long: a tool error naming the field and the limit.
            let (_, _, answer) = post(
                &client,
                &url,
                s,
                call(5, "add_learning", json!({ "text": "x".repeat(1_000_000) })),
            )
            .await;
            let answer = answer.unwrap();
            assert_eq!(answer["result"]["isError"], true, "{answer}");
            let text = answer["result"]["content"][0]["text"].as_str().unwrap();
            assert!(
                text.contains("text: 1000000 characters is too long"),
                "{text}"
            );

            // The server still answers.
            let (_, _, answer) = post(&client, &url, s, call(6, "list_sessions", json!({}))).await;
            let answer = answer.unwrap();
            let text = answer["result"]["content"][0]["text"].as_str().unwrap();
            let listed: Value = serde_json::from_str(text).unwrap();
            assert_eq!(listed[0]["id"], sid.as_str());
        };
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .unwrap();

        let doc = f.doc().await;
        assert_eq!(doc.learnings.len(), 1);
        let l = &doc.learnings[0];
        assert_eq!(l.text, "Use PKCE everywhere.");
        assert_eq!(l.importance, Importance::High);
        assert_eq!(l.author, format!("agent:{sid}"));
        assert_eq!(l.from_session.as_deref(), Some(sid.as_str()));
        server.abort();
        f.stop().await;
    }
}
