/**
 * `/`: the features you are a member of, and creating one.
 */
import { useCallback, useEffect, useId, useMemo, useState } from "react";
import type { FormEvent } from "react";
import type { FeatureDoc } from "../schema";
import { readFeature } from "../doc/feature";
import { featureRows } from "../model/feature";
import type { FeatureListItem } from "../model/feature";
import { plural } from "../model/format";
import { local } from "../sync/local";
import { useConnection, useConnectionState, useDoc, useHandle, useNow } from "./hooks";
import { Link, navigate, paths } from "./router";
import { Avatar, Chip, Empty, ErrorNote, Loading, Time } from "./components";

/** Documents of the first rows are opened (and so kept in IndexedDB for
 * offline use); further rows show what the list endpoint says. */
const LIVE_ROWS = 40;

function useFeatureList() {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [items, setItems] = useState<FeatureListItem[] | null>(() => local.features(conn.me.user_id));
  const [error, setError] = useState<string | null>(null);
  const refresh = useCallback(async () => {
    try {
      const fresh = await conn.api.listFeatures();
      setItems(fresh);
      setError(null);
      local.saveFeatures(conn.me.user_id, fresh);
      for (const f of fresh) conn.rememberFeatureUrl(f.feature_id, f.doc_url, { persist: false });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  }, [conn]);
  useEffect(() => {
    if (online) void refresh();
  }, [online, refresh]);
  return { items, error, refresh };
}

function FeatureRowItem({ item, live, now }: { item: FeatureListItem; live: boolean; now: number }) {
  const { handle } = useHandle<FeatureDoc>(live ? item.doc_url : null);
  const doc = useDoc(handle);
  const row = useMemo(() => featureRows([item], doc ? new Map([[item.feature_id, readFeature(doc)]]) : new Map())[0]!, [item, doc]);
  const people = row.participants.filter((p) => p.role !== "agent");
  return (
    <li className="feature-row">
      <div className="feature-row-main">
        <Link to={paths.feature(row.featureId)} className="feature-title">
          {row.title || "Untitled feature"}
        </Link>
        <div className="feature-meta">
          {row.status !== "active" && <Chip>{row.status}</Chip>}
          {row.loaded ? (
            <span>
              {plural(row.sessionCount, "session")}
              {row.runningSessions > 0 && <> · <span className="tone-info">{row.runningSessions} running</span></>}
              {row.waitingPrompts > 0 && <> · {plural(row.waitingPrompts, "prompt")} waiting</>}
            </span>
          ) : (
            <span className="muted">not on this device yet</span>
          )}
        </div>
      </div>
      <div className="feature-row-side">
        <span className="avatar-stack" aria-label={`${people.length} participants`}>
          {people.slice(0, 5).map((p) => (
            <Avatar key={p.userId} id={p.userId} name={p.name} size="sm" />
          ))}
          {people.length > 5 && <span className="avatar avatar-sm avatar-more">+{people.length - 5}</span>}
        </span>
        <span className="muted small">
          <Time ms={row.lastActivity} now={now} />
        </span>
      </div>
    </li>
  );
}

function NewFeatureForm({ onDone }: { onDone: () => void }) {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [repoUrl, setRepoUrl] = useState("");
  const [branch, setBranch] = useState("main");
  const [fullClone, setFullClone] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ids = { title: useId(), desc: useId(), repo: useId(), branch: useId() };

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!title.trim()) {
      setError("Give the feature a title.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const created = await conn.api.createFeature({
        title: title.trim(),
        description: description.trim(),
        repo: repoUrl.trim() ? { url: repoUrl.trim(), base_branch: branch.trim() || "main", ...(fullClone ? { full_clone: true } : {}) } : null,
      });
      conn.rememberFeatureUrl(created.feature_id, created.doc_url);
      onDone();
      navigate(paths.feature(created.feature_id));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card form-card stack" onSubmit={submit} aria-label="New feature">
      <h2>New feature</h2>
      <div className="field">
        <label htmlFor={ids.title}>Title</label>
        <input id={ids.title} value={title} onChange={(e) => setTitle(e.target.value)} placeholder="Add OAuth login" autoFocus maxLength={200} />
      </div>
      <div className="field">
        <label htmlFor={ids.desc}>Description</label>
        <textarea id={ids.desc} rows={3} value={description} onChange={(e) => setDescription(e.target.value)} placeholder="What should be true when this is done?" />
      </div>
      <div className="field-row">
        <div className="field grow">
          <label htmlFor={ids.repo}>Repository URL (optional)</label>
          <input id={ids.repo} type="url" inputMode="url" value={repoUrl} onChange={(e) => setRepoUrl(e.target.value)} placeholder="https://github.com/org/repo" />
        </div>
        <div className="field">
          <label htmlFor={ids.branch}>Base branch</label>
          <input id={ids.branch} value={branch} onChange={(e) => setBranch(e.target.value)} disabled={!repoUrl.trim()} />
        </div>
      </div>
      {repoUrl.trim() && (
        <label className="check">
          <input type="checkbox" checked={fullClone} onChange={(e) => setFullClone(e.target.checked)} />
          Clone the whole history (sessions start faster with the default shallow clone)
        </label>
      )}
      {error && <ErrorNote>{error}</ErrorNote>}
      {!online && <p className="fine">Creating a feature needs the server; you are offline.</p>}
      <div className="form-actions">
        <button type="button" className="btn" onClick={onDone}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy || !online} aria-busy={busy}>
          {busy ? "Creating…" : "Create feature"}
        </button>
      </div>
    </form>
  );
}

export function FeatureList() {
  const { items, error } = useFeatureList();
  const online = useConnectionState().status === "online";
  const [creating, setCreating] = useState(false);
  const now = useNow(30_000);
  useEffect(() => {
    document.title = "Features · Canopy";
  }, []);
  return (
    <main className="page">
      <div className="page-head">
        <h1>Features</h1>
        {!creating && (
          <button type="button" className="btn btn-primary" onClick={() => setCreating(true)}>
            New feature
          </button>
        )}
      </div>
      {creating && <NewFeatureForm onDone={() => setCreating(false)} />}
      {error && items && <p className="fine">Showing the list saved on this device ({error}).</p>}
      {items === null ? (
        error ? (
          <ErrorNote>Could not load your features: {error}</ErrorNote>
        ) : online ? (
          <Loading />
        ) : (
          <Empty>Your features appear here once this device has connected to the server.</Empty>
        )
      ) : items.length === 0 ? (
        <Empty>No features yet. Create one to start a team workspace for an agent-built change.</Empty>
      ) : (
        <ul className="feature-list card">
          {items.map((item, i) => (
            <FeatureRowItem key={item.feature_id} item={item} live={i < LIVE_ROWS} now={now} />
          ))}
        </ul>
      )}
    </main>
  );
}
