/**
 * `/f/:featureId/s/:sessionId`: one agent session, live.
 */
import { useEffect, useId, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { KeyboardEvent } from "react";
import type { FeatureView, SessionView as Session } from "../doc/feature";
import type { PartView } from "../doc/transcript";
import { appendQueueEntry, cancelQueueEntry, markKeyFile } from "../doc/write";
import { stepLabel, transcriptModel } from "../model/transcript";
import type { RenderMessage, RenderPart } from "../model/transcript";
import { formatToolInput, summarizeTool } from "../model/tools";
import { myPlaceInLine, queueModel } from "../model/queue";
import type { QueueItem } from "../model/queue";
import { cost, plural, tokens } from "../model/format";
import { nameOf, queueTone, sessionCards, sessionTone } from "../model/feature";
import type { FeatureRoom } from "../sync/rooms";
import type { PullRequestOutcome, SessionDiff } from "../api/client";
import { useConnection, useConnectionState, useFeature, useNow, usePresence, useTranscript } from "./hooks";
import { FeatureHeader, QueueRow, useMutate, useRole } from "./Dashboard";
import { Link, paths } from "./router";
import { AsyncButton, Avatar, Chip, Empty, ErrorNote, Loading, Section, Spinner, Time } from "./components";
import { Markdown } from "./Markdown";

// ---------------------------------------------------------------- transcript parts

function ToolPart({ part, featureId, sessionId }: { part: RenderPart; featureId: string; sessionId: string }) {
  const conn = useConnection();
  const summary = summarizeTool(part);
  const [full, setFull] = useState<string | null>(null);
  const icon = summary.failed ? "✕" : summary.done ? "✓" : null;
  return (
    <details className={`tool tool-${summary.failed ? "error" : summary.done ? "done" : "running"}`}>
      <summary>
        <span className="tool-state" aria-label={summary.stateLabel}>
          {icon ?? <Spinner label={summary.stateLabel} />}
        </span>
        <span className="tool-name">{summary.tool}</span>
        <span className="tool-arg">{summary.argument}</span>
        {summary.errorLine && <span className="tool-error">{summary.errorLine}</span>}
      </summary>
      <div className="tool-body">
        {part.input && (
          <>
            <p className="tool-label">Input</p>
            <pre className="code">{formatToolInput(part.input)}</pre>
          </>
        )}
        {(full ?? part.output) && (
          <>
            <p className="tool-label">Output</p>
            <pre className="code">{full ?? part.output}</pre>
          </>
        )}
        {part.truncated && full === null && (
          <AsyncButton
            className="btn btn-small"
            onClick={async () => setFull((await conn.api.toolOutput(featureId, sessionId, part.id)).output)}
          >
            Load the full output
          </AsyncButton>
        )}
        {part.error && (
          <>
            <p className="tool-label">Error</p>
            <pre className="code code-error">{part.error}</pre>
          </>
        )}
      </div>
    </details>
  );
}

function Part({ part, featureId, sessionId }: { part: RenderPart; featureId: string; sessionId: string }) {
  switch (part.type) {
    case "text":
      return (
        <div className="part part-text">
          {part.partial && <span className="muted">… </span>}
          <Markdown text={part.text ?? ""} streaming={part.streaming} />
        </div>
      );
    case "reasoning":
      return (
        <details className="part part-reasoning" open={part.streaming || undefined}>
          <summary>{part.streaming ? "Thinking…" : "Reasoning"}</summary>
          <div className="reasoning-text">{part.text}</div>
        </details>
      );
    case "tool":
      return <ToolPart part={part} featureId={featureId} sessionId={sessionId} />;
    case "step": {
      // A step that ended normally is not worth a line (README §5).
      const label = stepLabel(part.text);
      return label ? (
        <div className="part part-step" role="note">
          {label}
        </div>
      ) : null;
    }
    default:
      return (
        <div className="part part-unknown">
          <span className="muted">{part.type || "part"}</span> {part.text ?? part.output ?? ""}
        </div>
      );
  }
}

function MessageBlock({ m, feature, featureId, sessionId, now }: { m: RenderMessage; feature: FeatureView; featureId: string; sessionId: string; now: number }) {
  const conn = useConnection();
  if (m.role === "user") {
    const author = m.author ?? "";
    const text = m.parts.map((p: PartView) => p.text ?? "").join("\n");
    // The prompt's queue entry says how its run ended, when not plainly.
    const entry = m.queueEntry ? feature.queue.find((q) => q.id === m.queueEntry) : undefined;
    const showStatus = entry && entry.status !== "done";
    return (
      <article className="msg msg-user">
        <header className="msg-head">
          <Avatar id={author || "user"} name={nameOf(feature, author, null)} size="sm" />
          <span className="msg-who">{nameOf(feature, author, conn.me.user_id)}</span>
          {showStatus && <Chip tone={queueTone(entry.status)}>{entry.status}</Chip>}
          <span className="muted small">
            <Time ms={m.createdAt} now={now} />
          </span>
        </header>
        <div className="msg-text">{text}</div>
        {entry?.error && <p className="msg-error">{entry.error}</p>}
      </article>
    );
  }
  // An answer that produced nothing (e.g. a run stopped before it started).
  if (m.parts.length === 0 && !m.error && !m.streaming) return null;
  return (
    <article className={`msg msg-agent ${m.streaming ? "is-streaming" : ""}`}>
      <header className="msg-head">
        <span className="agent-mark" aria-hidden="true" />
        <span className="msg-who">{m.role === "assistant" ? "Agent" : m.role}</span>
        <span className="muted small">
          <Time ms={m.createdAt} now={now} />
        </span>
      </header>
      <div className="msg-parts">
        {m.parts.map((p) => (
          <Part key={p.id} part={p} featureId={featureId} sessionId={sessionId} />
        ))}
      </div>
      {m.error && (
        <p className="msg-error" role="alert">
          {m.error}
        </p>
      )}
      {m.usage && !m.streaming && m.usage.inputTokens + m.usage.outputTokens > 0 && (
        <p className="msg-foot">
          {tokens(m.usage.inputTokens)} in · {tokens(m.usage.outputTokens)} out · {cost(m.usage.costUsd)}
        </p>
      )}
    </article>
  );
}

/** Prompts of this session that the transcript does not show yet. */
function PendingPrompt({ item, feature, onCancel, now }: { item: QueueItem; feature: FeatureView; onCancel: (id: string) => void; now: number }) {
  const conn = useConnection();
  return (
    <article className="msg msg-user msg-pending">
      <header className="msg-head">
        <Avatar id={item.author} name={nameOf(feature, item.author, null)} size="sm" />
        <span className="msg-who">{nameOf(feature, item.author, conn.me.user_id)}</span>
        <Chip tone={queueTone(item.status)}>{item.status === "queued" ? (item.position === 0 ? "next" : `${item.position} ahead`) : item.status}</Chip>
        <span className="muted small">
          <Time ms={item.createdAt} now={now} />
        </span>
        {item.canCancel && (
          <button type="button" className="link-button" onClick={() => onCancel(item.id)}>
            Withdraw
          </button>
        )}
      </header>
      <div className="msg-text">{item.text}</div>
      {item.error && <p className="msg-error">{item.error}</p>}
    </article>
  );
}

function Transcript({
  feature,
  featureId,
  session,
  onCancel,
}: {
  feature: FeatureView;
  featureId: string;
  session: Session;
  onCancel: (id: string) => void;
}) {
  const conn = useConnection();
  const now = useNow(30_000);
  const t = useTranscript(session.transcript);
  const messages = useMemo(() => transcriptModel(t.view, t.stream), [t.view, t.stream]);
  const inTranscript = useMemo(() => new Set(messages.map((m) => m.queueEntry).filter(Boolean)), [messages]);
  const pending = queueModel(feature, conn.me.user_id, { sessionId: session.id }).active.filter((e) => !inTranscript.has(e.id));
  const failedRecent = queueModel(feature, conn.me.user_id, { sessionId: session.id }).finished.filter(
    (e) => (e.status === "rejected" || e.status === "failed") && !inTranscript.has(e.id) && now - (e.finishedAt ?? e.createdAt) < 30 * 60_000,
  );

  // Stick to the bottom while new output arrives, unless the reader scrolled up.
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const [behind, setBehind] = useState(false);
  const signature = messages.reduce((n, m) => n + m.parts.reduce((k, p) => k + (p.text?.length ?? 0) + (p.output?.length ?? 0) + 1, 1), 0) + pending.length * 7;
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    else setBehind(true);
  }, [signature]);
  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
    if (atBottom.current) setBehind(false);
  };

  return (
    <div className="transcript-wrap">
      <div className="transcript" ref={scroller} onScroll={onScroll} tabIndex={0} aria-label="Transcript" role="log" aria-live="off">
        {!session.transcript && pending.length === 0 && <Empty>No conversation yet. Queue a prompt below to start the agent.</Empty>}
        {t.loading && <Loading>Loading the transcript…</Loading>}
        {t.error && !t.view && (
          <ErrorNote>
            This transcript is not on this device yet (a transcript is stored here once you open its session while connected), and the server cannot be
            reached to fetch it.
          </ErrorNote>
        )}
        {messages.map((m) => (
          <MessageBlock key={m.id} m={m} feature={feature} featureId={featureId} sessionId={session.id} now={now} />
        ))}
        {failedRecent.map((item) => (
          <PendingPrompt key={item.id} item={item} feature={feature} onCancel={onCancel} now={now} />
        ))}
        {pending.map((item) => (
          <PendingPrompt key={item.id} item={item} feature={feature} onCancel={onCancel} now={now} />
        ))}
        <div className="transcript-end" />
      </div>
      {behind && (
        <button
          type="button"
          className="btn btn-small jump"
          onClick={() => {
            const el = scroller.current;
            if (el) el.scrollTop = el.scrollHeight;
            atBottom.current = true;
            setBehind(false);
          }}
        >
          ↓ Latest
        </button>
      )}
    </div>
  );
}

// ---------------------------------------------------------------- composer

const drafts = new Map<string, string>();

function Composer({
  feature,
  session,
  writable,
  room,
  mutate,
}: {
  feature: FeatureView;
  session: Session;
  writable: boolean;
  room: FeatureRoom | null;
  mutate: ReturnType<typeof useMutate>["mutate"];
}) {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [text, setText] = useState(() => drafts.get(session.id) ?? "");
  const ref = useRef<HTMLTextAreaElement>(null);
  const id = useId();
  const place = myPlaceInLine(feature, conn.me.user_id, session.id);
  const blocked = sessionCards(feature).find((c) => c.session.id === session.id)?.blockedBy ?? [];

  useEffect(() => {
    drafts.set(session.id, text);
  }, [session.id, text]);

  // Grow with the text, up to a limit (the transcript shrinks, not jumps).
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 220)}px`;
  }, [text]);

  const submit = () => {
    if (!text.trim() || !writable) return;
    const ok = mutate("queue a prompt", (d) => {
      appendQueueEntry(d, { sessionId: session.id, author: conn.me.user_id, text, now: Date.now() });
    });
    if (ok) setText("");
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  let status: string;
  if (!writable) status = "You can read this session, but not prompt it.";
  else if (place) status = place.position === 0 ? "Your prompt is next." : `Your prompt is in line: ${plural(place.position, "prompt")} ahead.`;
  else if (blocked.length) status = `Prompts wait until ${blocked.map((b) => b.title || b.id).join(", ")} completes.`;
  else if (!online) status = "Offline: a prompt you queue now is sent when the connection returns.";
  else status = "Enter queues your prompt · Shift+Enter adds a line";

  return (
    <div className="composer">
      <label htmlFor={id} className="sr-only">
        Prompt for {session.title}
      </label>
      <div className="composer-box">
        <textarea
          id={id}
          ref={ref}
          rows={1}
          value={text}
          disabled={!writable}
          placeholder={writable ? `Ask the agent in “${session.title || "this session"}”…` : "Read-only"}
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value.trim()) room?.typing(session.id);
          }}
          onKeyDown={onKeyDown}
        />
        <button type="button" className="btn btn-primary" onClick={submit} disabled={!writable || !text.trim()}>
          Queue
        </button>
      </div>
      <p className="composer-status" aria-live="polite">
        {status}
      </p>
    </div>
  );
}

// ---------------------------------------------------------------- side panel

function SessionSide({
  feature,
  session,
  writable,
  mutate,
  now,
}: {
  feature: FeatureView;
  session: Session;
  writable: boolean;
  mutate: ReturnType<typeof useMutate>["mutate"];
  now: number;
}) {
  const conn = useConnection();
  const keyPaths = new Set(feature.keyFiles.map((k) => k.path));
  const q = queueModel(feature, conn.me.user_id, { sessionId: session.id, canWrite: writable });
  const cancel = (id: string) => mutate("withdraw a prompt", (d) => void cancelQueueEntry(d, id, conn.me.user_id, Date.now()));
  const sb = session.sandbox;
  return (
    <>
      <Section title="Files changed" count={session.filesChanged.length}>
        {session.filesChanged.length === 0 ? (
          <Empty>No files changed yet.</Empty>
        ) : (
          <ul className="file-list">
            {session.filesChanged.map((path) => (
              <li key={path}>
                <code className="path" title={path}>
                  {path}
                </code>
                {writable &&
                  (keyPaths.has(path) ? (
                    <span className="key-mark" title="Key file">
                      ★
                    </span>
                  ) : (
                    <button
                      type="button"
                      className="link-button"
                      aria-label={`Mark ${path} as a key file`}
                      title="Mark as a key file"
                      onClick={() => mutate("mark a key file", (d) => void markKeyFile(d, path, "", session.id))}
                    >
                      ☆
                    </button>
                  ))}
              </li>
            ))}
          </ul>
        )}
        {session.filesChanged.length > 0 && (
          <SessionDiffView featureId={feature.featureId} sessionId={session.id} version={session.filesChanged.join("\n") + (sb?.head ?? "")} />
        )}
      </Section>
      <Section title="Queue" count={q.active.length}>
        {q.active.length === 0 ? (
          <Empty>Nothing waiting.</Empty>
        ) : (
          <ol className="queue-list">
            {q.active.map((item) => (
              <QueueRow key={item.id} item={item} feature={feature} onCancel={cancel} showSession={false} now={now} />
            ))}
          </ol>
        )}
      </Section>
      <Section title="Details">
        <dl className="facts">
          {session.scope && (
            <div>
              <dt>Scope</dt>
              <dd>{session.scope}</dd>
            </div>
          )}
          <div>
            <dt>Sandbox</dt>
            <dd>
              {sb ? `${sb.backend} · ${sb.state}` : "not started"}
              {sb?.detail && <span className="detail"> — {sb.detail}</span>}
            </dd>
          </div>
          {sb?.branch && (
            <div>
              <dt>Branch</dt>
              <dd>
                <code>{sb.branch}</code>
                {sb.head && <span className="muted"> @ {sb.head.slice(0, 10)}</span>}
              </dd>
            </div>
          )}
          {session.pr && (
            <div>
              <dt>Pull request</dt>
              <dd>
                <a href={session.pr.url} target="_blank" rel="noreferrer">
                  #{session.pr.number}
                </a>{" "}
                {session.pr.state}
              </dd>
            </div>
          )}
          <div>
            <dt>Usage</dt>
            <dd>
              {tokens(session.usage.inputTokens)} in · {tokens(session.usage.outputTokens)} out · {cost(session.usage.costUsd)}
            </dd>
          </div>
          <div>
            <dt>Started by</dt>
            <dd>
              {nameOf(feature, session.createdBy, conn.me.user_id)} · <Time ms={session.createdAt} now={now} />
            </dd>
          </div>
        </dl>
      </Section>
    </>
  );
}

// ---------------------------------------------------------------- page

export function SessionView({ featureId, sessionId }: { featureId: string; sessionId: string }) {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const f = useFeature(featureId);
  const { role, writable } = useRole(featureId, f.view);
  const { mutate, error, setError } = useMutate(f.handle);
  const now = useNow(10_000);
  const [sideOpen, setSideOpen] = useState(false);
  const [prOutcome, setPrOutcome] = useState<PullRequestOutcome | null>(null);
  usePresence(f.room, sessionId);
  const session = f.view?.sessions.find((s) => s.id === sessionId) ?? null;
  useEffect(() => {
    document.title = `${session?.title || "Session"} · ${f.view?.title || "Feature"} · Canopy`;
  }, [session?.title, f.view?.title]);

  if (f.error && !f.view) {
    return (
      <main className="page narrow">
        <h1>Session unavailable</h1>
        <ErrorNote>{f.error}</ErrorNote>
        <Link to={paths.features()}>All features</Link>
      </main>
    );
  }
  if (!f.view) return <Loading>Opening the session…</Loading>;
  const feature = f.view;
  if (!session) {
    return (
      <main className="page narrow">
        <h1>No such session</h1>
        <p>
          This feature has no session <code>{sessionId}</code>. <Link to={paths.feature(featureId)}>Back to {feature.title}</Link>
        </p>
      </main>
    );
  }
  const running = feature.queue.some((q) => q.sessionId === sessionId && (q.status === "running" || q.status === "dispatched"));
  const askPr = async () => {
    setPrOutcome(null);
    setPrOutcome(await conn.api.openPullRequest(featureId, sessionId));
  };
  const cancel = (id: string) => mutate("withdraw a prompt", (d) => void cancelQueueEntry(d, id, conn.me.user_id, Date.now()));

  return (
    <main className="session-page">
      <div className="session-header">
        <nav className="crumbs" aria-label="Breadcrumb">
          <Link to={paths.features()}>Features</Link> <span aria-hidden="true">›</span>{" "}
          <Link to={paths.feature(featureId)}>{feature.title || "Feature"}</Link>
        </nav>
        <FeatureHeader feature={feature} live={f.live} role={role} room={f.room} sessionId={sessionId} compact>
          <div className="session-title-row">
            <h1>{session.title || session.id}</h1>
            <Chip tone={sessionTone(session.status)}>{session.status}</Chip>
            <span className="grow" />
            {writable && (running || session.status === "running") && (
              <AsyncButton
                className="btn btn-danger"
                disabled={!online}
                title={online ? "Abort the run in flight; the next prompt runs" : "Needs a connection"}
                onClick={() => conn.api.stopSession(featureId, sessionId)}
              >
                ■ Stop
              </AsyncButton>
            )}
            {writable && feature.repo && session.sandbox && (
              <AsyncButton
                className="btn pr-button"
                disabled={!online || running}
                title={
                  !online
                    ? "Needs a connection"
                    : running
                      ? "Wait for the running prompt to finish"
                      : "Push the session's branch and open its pull request (as you when your GitHub account is linked)"
                }
                onClick={askPr}
              >
                {session.pr ? "Update pull request" : "Open pull request"}
              </AsyncButton>
            )}
            <button type="button" className="btn btn-small side-toggle" aria-expanded={sideOpen} onClick={() => setSideOpen((o) => !o)}>
              {sideOpen ? "Hide details" : `Details${session.filesChanged.length ? ` · ${plural(session.filesChanged.length, "file")}` : ""}`}
            </button>
          </div>
        </FeatureHeader>
        {error && (
          <ErrorNote>
            {error}{" "}
            <button type="button" className="link-button" onClick={() => setError(null)}>
              Dismiss
            </button>
          </ErrorNote>
        )}
        {prOutcome && <PullRequestNote outcome={prOutcome} onDismiss={() => setPrOutcome(null)} />}
      </div>
      <div className={`session-layout ${sideOpen ? "side-open" : ""}`}>
        <section className="session-main" aria-label="Conversation">
          <Transcript feature={feature} featureId={featureId} session={session} onCancel={cancel} />
          <Composer feature={feature} session={session} writable={writable} room={f.room} mutate={mutate} />
        </section>
        <aside className="session-side" aria-label="Session details">
          <SessionSide feature={feature} session={session} writable={writable} mutate={mutate} now={now} />
        </aside>
      </div>
    </main>
  );
}

type DiffState =
  | { kind: "idle" }
  | { kind: "loading" }
  | { kind: "ready"; diff: SessionDiff; version: string }
  | { kind: "error"; message: string };

/** The session's changes with their patches, fetched when opened and again
 * when the files change: live from the sandbox while it runs, else as the
 * server kept them at the end of the last run. */
function SessionDiffView({ featureId, sessionId, version }: { featureId: string; sessionId: string; version: string }) {
  const conn = useConnection();
  const [open, setOpen] = useState(false);
  const [state, setState] = useState<DiffState>({ kind: "idle" });
  useEffect(() => {
    if (!open || (state.kind === "ready" && state.version === version) || state.kind === "loading") return;
    let live = true;
    setState({ kind: "loading" });
    conn.api
      .sessionDiff(featureId, sessionId)
      .then((diff) => live && setState({ kind: "ready", diff, version }))
      .catch((e: unknown) => {
        if (!live) return;
        const err = e as { code?: string; message?: string };
        setState({
          kind: "error",
          message:
            err.code === "sandbox_not_running"
              ? "No changes to show yet: the session has not finished a prompt."
              : (err.message ?? "The diff could not be loaded."),
        });
      });
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open, version, featureId, sessionId]);
  return (
    <details className="diff" onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary>Show the changes</summary>
      {state.kind === "loading" && <Spinner />}
      {state.kind === "error" && <p className="muted">{state.message}</p>}
      {state.kind === "ready" &&
        (state.diff.files.length === 0 ? (
          <p className="muted">No changes since the session began.</p>
        ) : (
          <>
            {state.diff.source === "saved" && state.diff.saved_at ? (
              <p className="muted diff-source">
                As of the last run, <Time ms={state.diff.saved_at} now={Date.now()} /> (the sandbox is stopped).
              </p>
            ) : null}
            {state.diff.files.map((f) => (
              <div key={f.path} className="diff-file">
                <div className="diff-head">
                  <code className="diff-path" title={f.path}>
                    {f.path}
                  </code>
                  <span className="diff-stat">
                    {f.status} <span className="add">+{f.additions}</span> <span className="del">−{f.deletions}</span>
                  </span>
                </div>
                {f.binary ? (
                  <p className="muted">Binary file.</p>
                ) : f.patch ? (
                  <pre className="diff-patch">
                    {f.patch.split("\n").map((line, i) => (
                      <span key={i} className={line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : undefined}>
                        {line}
                        {"\n"}
                      </span>
                    ))}
                  </pre>
                ) : (
                  <p className="muted">Too large to show here.</p>
                )}
              </div>
            ))}
            {state.diff.truncated && <p className="muted">Some patches were left out: the diff is larger than the page shows.</p>}
          </>
        ))}
    </details>
  );
}

/** How asking for the pull request went: opened (as whom), updated, or
 * the compare page to open it by hand. */
function PullRequestNote({ outcome, onDismiss }: { outcome: PullRequestOutcome; onDismiss: () => void }) {
  const dismiss = (
    <button type="button" className="link-button" onClick={onDismiss}>
      Dismiss
    </button>
  );
  if (outcome.pr) {
    const who = outcome.opened_as === "app" ? "by the GitHub App" : outcome.opened_by ? `as @${outcome.opened_by}` : "";
    return (
      <p className="note pr-note" role="status">
        Pull request{" "}
        <a href={outcome.pr.url} target="_blank" rel="noreferrer">
          #{outcome.pr.number}
        </a>{" "}
        {outcome.created ? "opened" : "updated"} {who} from <code>{outcome.branch}</code>. {dismiss}
      </p>
    );
  }
  return (
    <p className="note pr-note" role="status" title={outcome.reason}>
      <code>{outcome.branch}</code> is pushed, but Canopy could not open the pull request for you: link your GitHub account (in the
      account menu), or install the GitHub App on the repository.{" "}
      {outcome.compare_url && (
        <a href={outcome.compare_url} target="_blank" rel="noreferrer" className="compare-link">
          Open it on GitHub
        </a>
      )}{" "}
      {dismiss}
    </p>
  );
}
