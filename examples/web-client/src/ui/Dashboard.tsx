/**
 * `/f/:featureId`: the feature dashboard.
 */
import { useEffect, useId, useMemo, useState } from "react";
import type { FormEvent, ReactNode } from "react";
import type { DocHandle } from "@automerge/automerge-repo/slim";
import type { FeatureDoc } from "../schema";
import { IMPORTANCES } from "../schema";
import type { DecisionView, FeatureView, LearningView } from "../doc/feature";
import {
  addDecision,
  addLearning,
  cancelQueueEntry,
  deleteDecision,
  deleteLearning,
  editDecision,
  editLearning,
  markKeyFile,
  unmarkKeyFile,
} from "../doc/write";
import { canWrite, filterDecisions, filterLearnings, myRole, nameOf, queueTone, sessionCards } from "../model/feature";
import { positionLabel, queueModel } from "../model/queue";
import type { QueueItem } from "../model/queue";
import { presenceModel, typingSentence, typingUsers } from "../model/presence";
import { cost, plural, tokens } from "../model/format";
import type { Member } from "../api/client";
import type { FeatureLive, FeatureRoom } from "../sync/rooms";
import { useConnection, useConnectionState, useFeature, useNow, usePresence } from "./hooks";
import { Link, paths } from "./router";
import { Avatar, Chip, EditActions, Empty, ErrorNote, LearningText, Loading, Section, Time } from "./components";
import { NotesEditor } from "./NotesEditor";

/** The user's role: the members endpoint when reachable, else the
 * document's participants mirror (works offline). */
export function useRole(featureId: string, feature: FeatureView | null) {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [members, setMembers] = useState<Member[] | null>(null);
  useEffect(() => {
    if (!online) return;
    let cancelled = false;
    conn.api
      .members(featureId)
      .then((m) => !cancelled && setMembers(m))
      .catch(() => {});
    return () => {
      cancelled = true;
    };
  }, [conn, featureId, online]);
  const fromMembers = members?.find((m) => m.user_id === conn.me.user_id)?.role ?? null;
  const role = myRole(feature, conn.me.user_id, fromMembers);
  return { role, writable: canWrite(role, feature), members };
}

/** Run a document change with a history message; report refusals. */
export function useMutate(handle: DocHandle<FeatureDoc> | null) {
  const [error, setError] = useState<string | null>(null);
  const mutate = (message: string, fn: (d: FeatureDoc) => void): boolean => {
    if (!handle) return false;
    try {
      setError(null);
      handle.change(fn, { message });
      return true;
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      return false;
    }
  };
  return { mutate, error, setError };
}

// ---------------------------------------------------------------- header

export function FeatureHeader({
  feature,
  live,
  role,
  room,
  sessionId,
  compact,
  children,
}: {
  feature: FeatureView;
  live: FeatureLive;
  role: string | null;
  room: FeatureRoom | null;
  sessionId?: string;
  compact?: boolean;
  children?: ReactNode;
}) {
  const conn = useConnection();
  const now = useNow(5_000);
  const people = presenceModel(feature.participants, live.presence, live.typing, now, conn.me.user_id);
  const typing = typingUsers(live.typing, now, conn.me.user_id, sessionId).map((u) => nameOf(feature, u));
  return (
    <header className={`feature-head ${compact ? "compact" : ""}`}>
      <div className="feature-head-main">
        {children}
        {!compact && feature.description && <p className="feature-desc">{feature.description}</p>}
        <div className="feature-facts">
          {feature.status !== "active" && <Chip>{feature.status}</Chip>}
          {role && <Chip tone={role === "viewer" ? "warn" : "neutral"}>{role}</Chip>}
          {feature.repo && (
            <span className="repo" title={feature.repo.url}>
              {feature.repo.url.replace(/^https?:\/\//, "")} <span className="muted">· {feature.repo.featureBranch ?? feature.repo.baseBranch}</span>
            </span>
          )}
        </div>
      </div>
      <div className="feature-head-side">
        <ul className="presence-row" aria-label="People">
          {people
            .filter((p) => p.role !== "agent")
            .slice(0, 8)
            .map((p) => (
              <li key={p.userId}>
                <Avatar id={p.userId} name={p.name} label={p.isMe ? `${p.name} (you)` : p.name} state={p.state} size="sm" />
              </li>
            ))}
        </ul>
        {/* Reserved line: appearing text does not move anything. */}
        <p className="typing-line" aria-live="polite">
          {typingSentence(typing)}
        </p>
      </div>
      {live.refused && (
        <div className="banner-inline banner-bad" role="alert">
          The server did not accept your changes ({live.refused.reason}): {live.refused.message}{" "}
          <button className="btn btn-small" type="button" onClick={() => room?.dismissRefused()}>
            Dismiss
          </button>
        </div>
      )}
      {!feature.writable && (
        <div className="banner-inline banner-warn">
          This feature uses a newer document format (schema {feature.schema}). It is shown read-only; update the client to edit it.
        </div>
      )}
    </header>
  );
}

// ---------------------------------------------------------------- sessions

function NewSessionForm({ featureId, feature, onDone }: { featureId: string; feature: FeatureView; onDone: () => void }) {
  const conn = useConnection();
  const [title, setTitle] = useState("");
  const [scope, setScope] = useState("");
  const [deps, setDeps] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ids = { title: useId(), scope: useId() };
  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!title.trim()) return setError("Give the session a title.");
    setBusy(true);
    setError(null);
    try {
      await conn.api.createSession(featureId, { title: title.trim(), scope: scope.trim(), depends_on: deps });
      onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form className="inline-form stack" onSubmit={submit}>
      <div className="field">
        <label htmlFor={ids.title}>Session title</label>
        <input id={ids.title} value={title} onChange={(e) => setTitle(e.target.value)} placeholder="write the tests" autoFocus />
      </div>
      <div className="field">
        <label htmlFor={ids.scope}>Scope</label>
        <textarea id={ids.scope} rows={2} value={scope} onChange={(e) => setScope(e.target.value)} placeholder="What this agent should (and should not) touch" />
      </div>
      {feature.sessions.length > 0 && (
        <fieldset className="field">
          <legend>Waits for</legend>
          <div className="checks">
            {feature.sessions.map((s) => (
              <label key={s.id} className="check">
                <input
                  type="checkbox"
                  checked={deps.includes(s.id)}
                  onChange={(e) => setDeps((d) => (e.target.checked ? [...d, s.id] : d.filter((x) => x !== s.id)))}
                />
                {s.title || s.id}
              </label>
            ))}
          </div>
        </fieldset>
      )}
      {error && <ErrorNote>{error}</ErrorNote>}
      <div className="form-actions">
        <button type="button" className="btn" onClick={onDone}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy} aria-busy={busy}>
          Create session
        </button>
      </div>
    </form>
  );
}

function SessionsPanel({ featureId, feature, writable, live }: { featureId: string; feature: FeatureView; writable: boolean; live: FeatureLive }) {
  const online = useConnectionState().status === "online";
  const [adding, setAdding] = useState(false);
  const now = useNow(10_000);
  const cards = sessionCards(feature);
  return (
    <Section
      title="Sessions"
      count={cards.length}
      actions={
        writable && !adding ? (
          <button type="button" className="btn btn-small" onClick={() => setAdding(true)} disabled={!online} title={online ? undefined : "Needs a connection"}>
            New session
          </button>
        ) : null
      }
    >
      {adding && <NewSessionForm featureId={featureId} feature={feature} onDone={() => setAdding(false)} />}
      {cards.length === 0 && !adding && <Empty>No sessions yet. A session is one agent with its own sandbox and branch.</Empty>}
      <ul className="session-list">
        {cards.map((c) => {
          const hb = live.heartbeats[c.session.id];
          return (
            <li key={c.session.id} className="session-card">
              <div className="session-top">
                <Link to={paths.session(featureId, c.session.id)} className="session-title">
                  {c.session.title || c.session.id}
                </Link>
                <Chip tone={c.tone}>{c.session.status}</Chip>
              </div>
              {c.session.scope && <p className="session-scope">{c.session.scope}</p>}
              <dl className="facts">
                {c.dependsOn.length > 0 && (
                  <div>
                    <dt>Waits for</dt>
                    <dd>
                      {c.dependsOn.map((d, i) => (
                        <span key={d.id}>
                          {i > 0 && ", "}
                          <span className={d.done ? "dep-done" : "dep-open"}>
                            {d.title} {d.done ? "✓" : `(${d.status})`}
                          </span>
                        </span>
                      ))}
                    </dd>
                  </div>
                )}
                {c.sandboxLabel && (
                  <div>
                    <dt>Sandbox</dt>
                    <dd>
                      {c.sandboxLabel}
                      {hb && now - hb.receivedAt < 10_000 && <span className="muted"> · agent {hb.sandboxState}</span>}
                      {c.sandboxDetail && <span className="detail"> — {c.sandboxDetail}</span>}
                    </dd>
                  </div>
                )}
                {c.session.sandbox?.branch && (
                  <div>
                    <dt>Branch</dt>
                    <dd>
                      <code>{c.session.sandbox.branch}</code>
                      {c.session.sandbox.head && <span className="muted"> @ {c.session.sandbox.head.slice(0, 8)}</span>}
                    </dd>
                  </div>
                )}
                {c.session.filesChanged.length > 0 && (
                  <div>
                    <dt>Files</dt>
                    <dd>{plural(c.session.filesChanged.length, "file")} changed</dd>
                  </div>
                )}
                {c.session.pr && (
                  <div>
                    <dt>PR</dt>
                    <dd>
                      <a href={c.session.pr.url} target="_blank" rel="noreferrer">
                        #{c.session.pr.number}
                      </a>{" "}
                      <span className="muted">{c.session.pr.state}</span>
                    </dd>
                  </div>
                )}
                {(c.session.usage.inputTokens > 0 || c.session.usage.outputTokens > 0) && (
                  <div>
                    <dt>Usage</dt>
                    <dd>
                      {tokens(c.session.usage.inputTokens + c.session.usage.outputTokens)} tokens · {cost(c.session.usage.costUsd)}
                    </dd>
                  </div>
                )}
              </dl>
              {(c.runningPrompt || c.waitingPrompts > 0) && (
                <p className="session-activity">
                  {c.runningPrompt && <span className="tone-info">Running: “{c.runningPrompt.slice(0, 80)}”</span>}
                  {c.runningPrompt && c.waitingPrompts > 0 && " · "}
                  {c.waitingPrompts > 0 && <span>{plural(c.waitingPrompts, "prompt")} waiting</span>}
                </p>
              )}
              {c.blockedBy.length > 0 && <p className="fine">Prompts wait until {c.blockedBy.map((b) => b.title || b.id).join(", ")} completes.</p>}
            </li>
          );
        })}
      </ul>
    </Section>
  );
}

// ---------------------------------------------------------------- queue

export function QueueRow({ item, feature, onCancel, showSession, now }: { item: QueueItem; feature: FeatureView; onCancel?: (id: string) => void; showSession: boolean; now: number }) {
  const conn = useConnection();
  return (
    <li className={`queue-row ${item.mine ? "mine" : ""}`}>
      <span className="queue-pos" aria-label="place in line">
        {item.position === null ? "" : item.status === "queued" ? `#${item.position + 1}` : "▶"}
      </span>
      <div className="queue-body">
        <p className="queue-text">{item.text}</p>
        <p className="queue-meta">
          <Chip tone={queueTone(item.status)}>{item.status}</Chip>
          {item.status === "queued" && <span>{positionLabel(item)}</span>}
          {showSession && <span className="muted">in {item.sessionTitle}</span>}
          <span className="muted">
            by {nameOf(feature, item.author, conn.me.user_id)} · <Time ms={item.createdAt} now={now} />
          </span>
          {item.error && <span className="tone-bad">{item.error}</span>}
        </p>
      </div>
      {item.canCancel && onCancel && (
        <button type="button" className="btn btn-small" onClick={() => onCancel(item.id)} aria-label={`Withdraw prompt: ${item.text.slice(0, 40)}`}>
          Withdraw
        </button>
      )}
    </li>
  );
}

function QueuePanel({ feature, writable, mutate }: { feature: FeatureView; writable: boolean; mutate: ReturnType<typeof useMutate>["mutate"] }) {
  const conn = useConnection();
  const now = useNow(30_000);
  const q = queueModel(feature, conn.me.user_id, { canWrite: writable });
  const cancel = (id: string) => mutate("withdraw a prompt", (d) => void cancelQueueEntry(d, id, conn.me.user_id, Date.now()));
  return (
    <Section title="Queue" count={q.active.length}>
      {q.active.length === 0 ? (
        <Empty>Nothing waiting. Open a session to queue a prompt.</Empty>
      ) : (
        <ol className="queue-list">
          {q.active.map((item) => (
            <QueueRow key={item.id} item={item} feature={feature} onCancel={cancel} showSession now={now} />
          ))}
        </ol>
      )}
      {q.finished.length > 0 && (
        <details className="finished">
          <summary>Finished ({q.finished.length})</summary>
          <ol className="queue-list">
            {q.finished.slice(0, 30).map((item) => (
              <QueueRow key={item.id} item={item} feature={feature} showSession now={now} />
            ))}
          </ol>
        </details>
      )}
    </Section>
  );
}

// ---------------------------------------------------------------- learnings & decisions

function LearningItem({ l, feature, writable, mutate, now }: { l: LearningView; feature: FeatureView; writable: boolean; mutate: ReturnType<typeof useMutate>["mutate"]; now: number }) {
  const conn = useConnection();
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(l.text);
  const [importance, setImportance] = useState(l.importance);
  const [files, setFiles] = useState(l.files.join(", "));
  if (editing) {
    return (
      <li className="know-item editing">
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const ok = mutate("edit a learning", (d) => {
              editLearning(d, l.id, { text, importance, files: splitList(files) });
            });
            if (ok) setEditing(false);
          }}
        >
          <textarea aria-label="Learning" rows={3} value={text} onChange={(e) => setText(e.target.value)} autoFocus />
          <div className="field-row">
            <label className="field">
              Importance
              <select value={importance} onChange={(e) => setImportance(e.target.value)}>
                {IMPORTANCES.map((i) => (
                  <option key={i}>{i}</option>
                ))}
              </select>
            </label>
            <label className="field grow">
              Files (comma-separated)
              <input value={files} onChange={(e) => setFiles(e.target.value)} />
            </label>
          </div>
          <EditActions
            onDelete={() => window.confirm("Delete this learning for everyone?") && mutate("delete a learning", (d) => void deleteLearning(d, l.id))}
            onCancel={() => setEditing(false)}
          />
        </form>
      </li>
    );
  }
  return (
    <li className="know-item">
      <LearningText importance={l.importance} text={l.text} />
      {l.files.length > 0 && (
        <p className="know-files">
          {l.files.map((f) => (
            <code key={f}>{f}</code>
          ))}
        </p>
      )}
      <p className="know-meta">
        {nameOf(feature, l.author, conn.me.user_id)} · <Time ms={l.createdAt} now={now} />
        {l.fromSession && <> · from {feature.sessions.find((s) => s.id === l.fromSession)?.title ?? l.fromSession}</>}
        {writable && (
          <button
            type="button"
            className="link-button"
            onClick={() => {
              setText(l.text);
              setImportance(l.importance);
              setFiles(l.files.join(", "));
              setEditing(true);
            }}
          >
            Edit
          </button>
        )}
      </p>
    </li>
  );
}

function DecisionItem({ x, feature, writable, mutate, now }: { x: DecisionView; feature: FeatureView; writable: boolean; mutate: ReturnType<typeof useMutate>["mutate"]; now: number }) {
  const conn = useConnection();
  const [editing, setEditing] = useState(false);
  const [decision, setDecision] = useState(x.decision);
  const [rationale, setRationale] = useState(x.rationale);
  const [alts, setAlts] = useState(x.alternatives.join("\n"));
  if (editing) {
    return (
      <li className="know-item editing">
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const ok = mutate("edit a decision", (d) => {
              editDecision(d, x.id, { decision, rationale, alternatives: alts.split("\n") });
            });
            if (ok) setEditing(false);
          }}
        >
          <label className="field">
            Decision
            <input value={decision} onChange={(e) => setDecision(e.target.value)} autoFocus />
          </label>
          <label className="field">
            Rationale
            <textarea rows={2} value={rationale} onChange={(e) => setRationale(e.target.value)} />
          </label>
          <label className="field">
            Alternatives considered (one per line)
            <textarea rows={2} value={alts} onChange={(e) => setAlts(e.target.value)} />
          </label>
          <EditActions
            onDelete={() => window.confirm("Delete this decision for everyone?") && mutate("delete a decision", (d) => void deleteDecision(d, x.id))}
            onCancel={() => setEditing(false)}
          />
        </form>
      </li>
    );
  }
  return (
    <li className="know-item">
      <p className="know-text">
        <strong>{x.decision}</strong>
      </p>
      {x.rationale && <p className="know-rationale">{x.rationale}</p>}
      {x.alternatives.length > 0 && <p className="know-alts">Instead of: {x.alternatives.join(" · ")}</p>}
      <p className="know-meta">
        {nameOf(feature, x.author, conn.me.user_id)} · <Time ms={x.createdAt} now={now} />
        {x.fromSession && <> · from {feature.sessions.find((s) => s.id === x.fromSession)?.title ?? x.fromSession}</>}
        {writable && (
          <button
            type="button"
            className="link-button"
            onClick={() => {
              setDecision(x.decision);
              setRationale(x.rationale);
              setAlts(x.alternatives.join("\n"));
              setEditing(true);
            }}
          >
            Edit
          </button>
        )}
      </p>
    </li>
  );
}

function splitList(s: string): string[] {
  return s
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean);
}

function KnowledgePanel({ feature, writable, mutate }: { feature: FeatureView; writable: boolean; mutate: ReturnType<typeof useMutate>["mutate"] }) {
  const conn = useConnection();
  const now = useNow(30_000);
  const [tab, setTab] = useState<"learnings" | "decisions">("learnings");
  const [query, setQuery] = useState("");
  const [adding, setAdding] = useState(false);
  const [text, setText] = useState("");
  const [importance, setImportance] = useState("medium");
  const [rationale, setRationale] = useState("");
  const names = (id: string) => nameOf(feature, id);
  const learnings = useMemo(() => filterLearnings(feature.learnings, query, names).reverse(), [feature, query]); // eslint-disable-line react-hooks/exhaustive-deps
  const decisions = useMemo(() => filterDecisions(feature.decisions, query, names).reverse(), [feature, query]); // eslint-disable-line react-hooks/exhaustive-deps
  const filterId = useId();

  const add = (e: FormEvent) => {
    e.preventDefault();
    const ok =
      tab === "learnings"
        ? mutate("add a learning", (d) => void addLearning(d, { text: text.trim(), importance, author: conn.me.user_id, now: Date.now() }))
        : mutate("record a decision", (d) => void addDecision(d, { decision: text.trim(), rationale: rationale.trim(), author: conn.me.user_id, now: Date.now() }));
    if (ok) {
      setText("");
      setRationale("");
      setAdding(false);
    }
  };

  return (
    <Section
      title="Learnings & decisions"
      actions={
        writable && !adding ? (
          <button type="button" className="btn btn-small" onClick={() => setAdding(true)}>
            {tab === "learnings" ? "Add learning" : "Record decision"}
          </button>
        ) : null
      }
    >
      <div className="tabs" role="tablist">
        <button role="tab" type="button" aria-selected={tab === "learnings"} className="tab" onClick={() => setTab("learnings")}>
          Learnings <span className="count">{feature.learnings.length}</span>
        </button>
        <button role="tab" type="button" aria-selected={tab === "decisions"} className="tab" onClick={() => setTab("decisions")}>
          Decisions <span className="count">{feature.decisions.length}</span>
        </button>
        <label htmlFor={filterId} className="sr-only">
          Filter
        </label>
        <input id={filterId} className="filter" type="search" placeholder="Filter…" value={query} onChange={(e) => setQuery(e.target.value)} />
      </div>
      {adding && (
        <form className="inline-form stack" onSubmit={add}>
          {tab === "learnings" ? (
            <>
              <textarea aria-label="New learning" rows={2} value={text} onChange={(e) => setText(e.target.value)} placeholder="Something the team (and the agents) should know" autoFocus />
              <label className="field inline">
                Importance
                <select value={importance} onChange={(e) => setImportance(e.target.value)}>
                  {IMPORTANCES.map((i) => (
                    <option key={i}>{i}</option>
                  ))}
                </select>
              </label>
            </>
          ) : (
            <>
              <input aria-label="Decision" value={text} onChange={(e) => setText(e.target.value)} placeholder="Decision" autoFocus />
              <textarea aria-label="Rationale" rows={2} value={rationale} onChange={(e) => setRationale(e.target.value)} placeholder="Why" />
            </>
          )}
          <div className="form-actions">
            <button type="button" className="btn btn-small" onClick={() => setAdding(false)}>
              Cancel
            </button>
            <button type="submit" className="btn btn-small btn-primary" disabled={!text.trim()}>
              Add
            </button>
          </div>
        </form>
      )}
      {tab === "learnings" ? (
        learnings.length === 0 ? (
          <Empty>{query ? "No learning matches." : "No learnings yet. Agents add them as they work; so can you."}</Empty>
        ) : (
          <ul className="know-list">
            {learnings.map((l) => (
              <LearningItem key={l.id} l={l} feature={feature} writable={writable} mutate={mutate} now={now} />
            ))}
          </ul>
        )
      ) : decisions.length === 0 ? (
        <Empty>{query ? "No decision matches." : "No decisions recorded yet."}</Empty>
      ) : (
        <ul className="know-list">
          {decisions.map((x) => (
            <DecisionItem key={x.id} x={x} feature={feature} writable={writable} mutate={mutate} now={now} />
          ))}
        </ul>
      )}
    </Section>
  );
}

// ---------------------------------------------------------------- key files

function KeyFilesPanel({ feature, writable, mutate }: { feature: FeatureView; writable: boolean; mutate: ReturnType<typeof useMutate>["mutate"] }) {
  const [path, setPath] = useState("");
  const [note, setNote] = useState("");
  const ids = { path: useId(), note: useId() };
  return (
    <Section title="Key files" count={feature.keyFiles.length}>
      {feature.keyFiles.length === 0 ? (
        <Empty>No key files yet.</Empty>
      ) : (
        <ul className="keyfile-list">
          {feature.keyFiles.map((k) => (
            <li key={k.path} className="keyfile">
              <div className="keyfile-top">
                <code className="path">{k.path}</code>
                {writable && (
                  <button type="button" className="link-button" aria-label={`Unmark ${k.path}`} onClick={() => mutate("unmark a key file", (d) => void unmarkKeyFile(d, k.path))}>
                    Remove
                  </button>
                )}
              </div>
              {(k.note || k.sessions.length > 0) && (
                <p className="keyfile-note">
                  {k.note}
                  {k.sessions.length > 0 && (
                    <span className="fine">
                      {k.note ? " · " : ""}
                      {k.sessions.map((sid) => feature.sessions.find((s) => s.id === sid)?.title ?? sid).join(", ")}
                    </span>
                  )}
                </p>
              )}
            </li>
          ))}
        </ul>
      )}
      {writable && (
        <form
          className="keyfile-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (!path.trim()) return;
            if (mutate("mark a key file", (d) => void markKeyFile(d, path, note.trim()))) {
              setPath("");
              setNote("");
            }
          }}
        >
          <label htmlFor={ids.path} className="sr-only">
            Path
          </label>
          <input id={ids.path} value={path} onChange={(e) => setPath(e.target.value)} placeholder="src/auth/oauth.rs" />
          <label htmlFor={ids.note} className="sr-only">
            Note
          </label>
          <input id={ids.note} value={note} onChange={(e) => setNote(e.target.value)} placeholder="why it matters" />
          <button type="submit" className="btn btn-small" disabled={!path.trim()}>
            Mark
          </button>
        </form>
      )}
    </Section>
  );
}

// ---------------------------------------------------------------- participants

function ParticipantsPanel({ feature, live, members }: { feature: FeatureView; live: FeatureLive; members: Member[] | null }) {
  const conn = useConnection();
  const now = useNow(5_000);
  const people = presenceModel(feature.participants, live.presence, live.typing, now, conn.me.user_id);
  const stateLabel = { active: "active", idle: "idle", away: "away", offline: "offline" };
  return (
    <Section title="People" count={people.filter((p) => p.role !== "agent").length}>
      <ul className="people-list">
        {people.map((p) => {
          const session = p.sessionId ? feature.sessions.find((s) => s.id === p.sessionId) : null;
          const typingIn = p.typing ? feature.sessions.find((s) => s.id === p.typing) : null;
          const role = members?.find((m) => m.user_id === p.userId)?.role ?? p.role;
          return (
            <li key={p.userId} className={`person state-${p.state}`}>
              <Avatar id={p.userId} name={p.name} state={p.state} />
              <div className="person-text">
                <span className="person-name">
                  {p.name}
                  {p.isMe && <span className="muted"> (you)</span>}
                </span>
                <span className="person-detail">
                  {role && <span>{role} · </span>}
                  {typingIn ? (
                    <span className="tone-info">typing in {typingIn.title}…</span>
                  ) : (
                    <>
                      {stateLabel[p.state]}
                      {session && p.state !== "offline" && <> · in {session.title}</>}
                    </>
                  )}
                </span>
              </div>
            </li>
          );
        })}
      </ul>
    </Section>
  );
}

// ---------------------------------------------------------------- page

export function Dashboard({ featureId }: { featureId: string }) {
  const f = useFeature(featureId);
  const { role, writable, members } = useRole(featureId, f.view);
  const { mutate, error, setError } = useMutate(f.handle);
  usePresence(f.room, null);
  useEffect(() => {
    document.title = `${f.view?.title || "Feature"} · Canopy`;
  }, [f.view?.title]);

  if (f.error && !f.view) {
    return (
      <main className="page narrow">
        <h1>Feature unavailable</h1>
        <ErrorNote>
          {f.error}. It is not stored on this device, and the server could not be asked for it (or you are not a member).
        </ErrorNote>
        <Link to={paths.features()}>All features</Link>
      </main>
    );
  }
  if (!f.view || !f.handle) return <Loading>Opening the feature…</Loading>;
  const feature = f.view;

  return (
    <main className="page dashboard">
      <nav className="crumbs" aria-label="Breadcrumb">
        <Link to={paths.features()}>Features</Link>
      </nav>
      <FeatureHeader feature={feature} live={f.live} role={role} room={f.room}>
        <div className="title-row">
          <h1>{feature.title || "Untitled feature"}</h1>
          <Link to={paths.history(featureId)} className="btn btn-small" title="Who changed what, the feature as it was, and restoring">
            History
          </Link>
        </div>
      </FeatureHeader>
      {!writable && role === "viewer" && <p className="readonly-note">You are a viewer: you see everything live, but cannot change anything.</p>}
      {error && (
        <ErrorNote>
          {error}{" "}
          <button type="button" className="link-button" onClick={() => setError(null)}>
            Dismiss
          </button>
        </ErrorNote>
      )}
      <div className="dash-grid">
        <div className="dash-main">
          <SessionsPanel featureId={featureId} feature={feature} writable={writable} live={f.live} />
          <QueuePanel feature={feature} writable={writable} mutate={mutate} />
          <KnowledgePanel feature={feature} writable={writable} mutate={mutate} />
        </div>
        <aside className="dash-side">
          <ParticipantsPanel feature={feature} live={f.live} members={members} />
          <Section title="Notes">
            <NotesEditor handle={f.handle} readOnly={!writable} onError={(e) => setError(e instanceof Error ? e.message : String(e))} />
          </Section>
          <KeyFilesPanel feature={feature} writable={writable} mutate={mutate} />
        </aside>
      </div>
    </main>
  );
}
