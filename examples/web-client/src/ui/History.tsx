/**
 * `/f/:featureId/history`: the feature's past. A timeline of its changes
 * (grouped by author and time), a scrubber over them, the feature as it was
 * at the chosen point (read-only, with "Restore this" on what people write),
 * and the differences between two points.
 *
 * Everything comes from the server's history API (the browser's replica
 * could answer some of it, but the server also knows who made each change).
 * The view's state lives in the URL's query (`?at=…&from=…&author=…&kind=…
 * &path=…`, see `model/history.ts`), rewritten in place as the user moves,
 * so a link reproduces what is on screen and Back leaves the page.
 */
import { useCallback, useEffect, useId, useMemo, useRef, useState } from "react";
import type { FormEvent, MouseEvent, ReactNode } from "react";
import * as A from "@automerge/automerge/slim";
import { ApiError } from "../api/client";
import { readFeature } from "../doc/feature";
import type { FeatureView } from "../doc/feature";
import { absoluteTime, plural } from "../model/format";
import { queueTone, sessionTone } from "../model/feature";
import type { ChangeGroup, DiffSection, FieldDiff, HistoryChange, HistoryFilter, HistoryQuery, JsonPatch, NameBook, RestoreState } from "../model/history";
import {
  KINDS,
  authorName,
  changeAuthor,
  describeChanges,
  diffView,
  formatHistoryQuery,
  groupChanges,
  historyFilter,
  nameBook,
  parseHistoryQuery,
  plain,
  redundantMessage,
  restoreState,
  sameHeads,
  timeRangeLabel,
  withContext,
} from "../model/history";
import { useConnection, useConnectionState, useFeature, useNow } from "./hooks";
import { useRole } from "./Dashboard";
import { Link, navigate, paths, useLocationSearch } from "./router";
import { AsyncButton, Avatar, Chip, Empty, ErrorNote, LearningText, Loading, Section, Spinner, Time } from "./components";

const PAGE_SIZE = 50;
/** Pages loaded on their own to find the version a link names. */
const AUTO_PAGES = 20;
/** Versions kept in memory, so scrubbing back and forth asks once. */
const VERSIONS_KEPT = 40;

function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === "bad_heads") return `The server has no such version: ${e.message}`;
    if (e.code === "bad_path") return `That path cannot be used: ${e.message}`;
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------- data

interface Timeline {
  changes: HistoryChange[];
  next: string | null;
  total: number;
  /** The document's heads when the first page was read. */
  heads: string[];
  loading: boolean;
  /** The list shown is from before a reload (other filters, or older). */
  stale: boolean;
  loaded: boolean;
  error: string | null;
}

const NO_TIMELINE: Timeline = { changes: [], next: null, total: 0, heads: [], loading: true, stale: false, loaded: false, error: null };

/** The history pages for these filters; `reload` reads the first page
 * again (keeping the old list on screen until it arrives). */
function useTimeline(featureId: string, filter: HistoryFilter) {
  const conn = useConnection();
  const [state, setState] = useState<Timeline>(NO_TIMELINE);
  const [generation, setGeneration] = useState(0);
  const current = useRef(0);

  useEffect(() => {
    const gen = ++current.current;
    setState((s) => ({ ...s, loading: true, stale: s.loaded, error: null }));
    conn.api
      .history(featureId, filter, { limit: PAGE_SIZE })
      .then((page) => {
        if (current.current !== gen) return;
        setState({ changes: page.changes, next: page.next, total: page.total, heads: page.heads, loading: false, stale: false, loaded: true, error: null });
      })
      .catch((e: unknown) => {
        if (current.current !== gen) return;
        setState((s) => ({ ...s, loading: false, stale: false, changes: s.stale ? [] : s.changes, error: errorText(e) }));
      });
  }, [conn, featureId, filter.author, filter.path, generation]); // eslint-disable-line react-hooks/exhaustive-deps

  const loadMore = useCallback(() => {
    if (!state.next || state.loading) return;
    const gen = current.current;
    const cursor = state.next;
    setState((s) => ({ ...s, loading: true }));
    conn.api
      .history(featureId, filter, { limit: PAGE_SIZE, cursor })
      .then((page) => {
        if (current.current !== gen) return;
        setState((s) => {
          const seen = new Set(s.changes.map((c) => c.hash));
          return { ...s, changes: [...s.changes, ...page.changes.filter((c) => !seen.has(c.hash))], next: page.next, total: page.total, loading: false };
        });
      })
      .catch((e: unknown) => {
        if (current.current !== gen) return;
        setState((s) => ({ ...s, loading: false, error: errorText(e) }));
      });
  }, [conn, featureId, filter, state.next, state.loading]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { ...state, loadMore, reload };
}

interface Loaded<T> {
  /** The last value that arrived (kept while the next one loads). */
  value: T | null;
  /** Which request `value` answers. */
  key: string | null;
  loading: boolean;
  error: string | null;
}

/**
 * One server read per key, cached: the document at some heads, or a diff.
 * While a new key loads the previous value stays on screen (no flashing
 * while scrubbing); requests wait `delay` ms so that holding an arrow key
 * down asks only for where it stops.
 */
function useCachedRead<T>(key: string | null, read: (key: string) => Promise<T>, cache: Map<string, unknown>, delay = 120): Loaded<T> {
  const [state, setState] = useState<Loaded<T>>({ value: null, key: null, loading: !!key, error: null });
  const readRef = useRef(read);
  readRef.current = read;
  useEffect(() => {
    if (!key) {
      setState({ value: null, key: null, loading: false, error: null });
      return;
    }
    if (cache.has(key)) {
      setState({ value: cache.get(key) as T, key, loading: false, error: null });
      return;
    }
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    const timer = setTimeout(() => {
      readRef
        .current(key)
        .then((value) => {
          cache.set(key, value);
          if (cache.size > VERSIONS_KEPT) cache.delete(cache.keys().next().value!);
          if (live) setState({ value, key, loading: false, error: null });
        })
        .catch((e: unknown) => live && setState({ value: null, key, loading: false, error: errorText(e) }));
    }, delay);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [key, cache, delay]);
  return state;
}

// ---------------------------------------------------------------- page

export function History({ featureId }: { featureId: string }) {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const f = useFeature(featureId);
  const { writable, members } = useRole(featureId, f.view);
  const search = useLocationSearch();
  const q = useMemo(() => parseHistoryQuery(search), [search]);
  const filter = useMemo(() => historyFilter(q), [q.author, q.kind, q.path]); // eslint-disable-line react-hooks/exhaustive-deps
  const tl = useTimeline(featureId, filter);
  /** Authors of changes this page made itself (restores): see `changeAuthor`. */
  const [known, setKnown] = useState<ReadonlyMap<string, string>>(new Map());
  const [notice, setNotice] = useState<string | null>(null);
  const book = useMemo(() => nameBook(members, f.view?.participants ?? [], f.view?.sessions ?? []), [members, f.view]);
  const groups = useMemo(() => groupChanges(tl.changes, known), [tl.changes, known]);
  const cache = useRef(new Map<string, unknown>()).current;
  const viewRef = useRef<HTMLDivElement>(null);

  useEffect(() => {
    document.title = `History · ${f.view?.title || "Feature"} · Canopy`;
  }, [f.view?.title]);

  const setQuery = useCallback(
    (patch: Partial<HistoryQuery>) => {
      const next = { ...parseHistoryQuery(location.search), ...patch };
      navigate(paths.history(featureId, formatHistoryQuery(next)), { replace: true, keepScroll: true });
    },
    [featureId],
  );

  // What is shown: `at`, else now (the heads the first page reported).
  const atHeads = q.at ?? (tl.heads.length ? tl.heads : null);
  const newest = tl.changes[0] ?? null;
  /** Without filters the newest change is the document now. */
  const nowIsNewest = !!newest && sameHeads([newest.hash], tl.heads);
  const selectedHash = q.at ? (q.at.length === 1 ? q.at[0]! : null) : nowIsNewest ? newest.hash : null;
  const selected = selectedHash ? (tl.changes.find((c) => c.hash === selectedHash) ?? null) : null;
  const baseHash = q.from?.length === 1 ? q.from[0]! : null;

  const version = useCachedRead(atHeads ? atHeads.join(",") : null, (k) => conn.api.featureAt(featureId, k.split(",")).then((r) => r.document), cache);
  const base = useCachedRead(q.from ? q.from.join(",") : null, (k) => conn.api.featureAt(featureId, k.split(",")).then((r) => r.document), cache);
  const diffKey = q.from && atHeads ? `diff:${q.from.join(",")}>${atHeads.join(",")}` : null;
  const patches = useCachedRead<JsonPatch[]>(
    diffKey,
    () => conn.api.featureDiff(featureId, q.from!, atHeads!).then((r) => r.patches),
    cache,
  );

  // A link to a version further back than the first page: load until found.
  const autoPages = useRef(0);
  useEffect(() => {
    autoPages.current = 0;
  }, [q.at?.join(","), filter]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    // Only once the server has shown the version (it exists).
    if (!q.at || selected || !tl.loaded || tl.loading || !tl.next || tl.error) return;
    if (version.error || version.loading || version.key !== q.at.join(",")) return;
    if (q.at.length !== 1 || autoPages.current >= AUTO_PAGES) return;
    autoPages.current++;
    tl.loadMore();
  }, [q.at, selected, tl, version.error, version.loading, version.key]);

  // The live document, as the server's JSON would read, to tell what differs now.
  const nowDoc = useMemo(() => (f.doc ? plain(f.doc) : null), [f.doc]);
  const liveHeads = useMemo(() => (f.doc ? A.getHeads(f.doc) : []), [f.doc]);
  const newChanges = tl.loaded && liveHeads.some((h) => !tl.heads.includes(h) && !tl.changes.some((c) => c.hash === h));

  const select = (c: HistoryChange | null, e?: MouseEvent) => {
    setNotice(null);
    if (c && e?.shiftKey) {
      setQuery({ from: [c.hash] });
      return;
    }
    setQuery({ at: !c || (nowIsNewest && c.hash === newest.hash) ? null : [c.hash] });
    // On a narrow screen the version is above the timeline: bring it into view.
    if (e && window.matchMedia("(max-width: 980px)").matches) {
      const top = viewRef.current?.getBoundingClientRect().top ?? 0;
      if (top < 0) viewRef.current?.scrollIntoView({ block: "start" });
    }
  };

  const restore = async (path: string[], label: string) => {
    if (!atHeads) return;
    const r = await conn.api.restore(featureId, atHeads, path);
    if (r.change) setKnown((m) => new Map(m).set(r.change!, conn.me.user_id));
    setNotice(r.change ? `Restored ${label}. The restore is now the newest change in the timeline.` : `The ${label} is already as it was here; nothing was written.`);
    tl.reload();
  };

  if (f.error && !f.view && tl.error) {
    return (
      <main className="page narrow">
        <h1>History unavailable</h1>
        <ErrorNote>{tl.error}</ErrorNote>
        <Link to={paths.features()}>All features</Link>
      </main>
    );
  }

  const title = f.view?.title || "Feature";
  const nowUrl = paths.history(featureId, formatHistoryQuery({ ...q, at: null, from: null }));
  const whoOf = (c: HistoryChange) => authorName(changeAuthor(c, known), book);

  return (
    <main className="page history">
      <nav className="crumbs" aria-label="Breadcrumb">
        <Link to={paths.features()}>Features</Link> <span aria-hidden="true">›</span> <Link to={paths.feature(featureId)}>{title}</Link>
      </nav>
      <header className="history-head">
        <div className="history-title">
          <h1>History</h1>
          <span className="muted">{tl.loaded ? plural(tl.total, "change") : "\u00a0"}</span>
        </div>
        <Link to={paths.feature(featureId)} className="btn btn-small">
          Back to the dashboard
        </Link>
      </header>

      <Filters q={q} setQuery={setQuery} book={book} changes={tl.changes} members={members} known={known} />

      <div className="history-grid">
        <Timeline
          groups={groups}
          tl={tl}
          book={book}
          selectedHash={selectedHash}
          baseHash={baseHash}
          onSelect={select}
          newChanges={newChanges}
          filtered={!!(filter.author || filter.path)}
        />

        <div className="history-view" ref={viewRef}>
          <Scrubber changes={tl.changes} nowIsNewest={nowIsNewest} atNow={!q.at} selectedHash={selectedHash} whoOf={whoOf} onSelect={(c) => select(c)} hasOlder={!!tl.next} onLoadOlder={tl.loadMore} baseHash={baseHash} />
          <VersionBanner
            q={q}
            selected={selected}
            whoOf={whoOf}
            loading={version.loading || base.loading || patches.loading}
            nowUrl={nowUrl}
            atHeads={atHeads}
            onCompare={(from) => setQuery({ from })}
          />
          {notice && (
            <div className="history-notice" role="status">
              <span>{notice}</span>
              <span className="grow" />
              {q.at && (
                <Link to={nowUrl} className="btn btn-small">
                  See it now
                </Link>
              )}
              <button type="button" className="btn btn-small" onClick={() => setNotice(null)}>
                Dismiss
              </button>
            </div>
          )}
          {q.from ? (
            <ComparePanel
              q={q}
              changes={tl.changes}
              whoOf={whoOf}
              base={base}
              target={version}
              patches={patches}
              onStop={() => setQuery({ from: null })}
              onSwap={() => setQuery({ at: q.from, from: atHeads })}
              canSwap={!!atHeads}
            />
          ) : version.error ? (
            <ErrorNote>{version.error}</ErrorNote>
          ) : version.value === null ? (
            <Loading>Reading this version…</Loading>
          ) : (
            <VersionView
              doc={version.value}
              nowDoc={q.at ? nowDoc : null}
              book={book}
              busy={version.loading}
              writable={writable}
              online={online}
              onRestore={restore}
            />
          )}
        </div>
      </div>
    </main>
  );
}

// ---------------------------------------------------------------- filters

function Filters({
  q,
  setQuery,
  book,
  changes,
  members,
  known,
}: {
  q: HistoryQuery;
  setQuery: (p: Partial<HistoryQuery>) => void;
  book: NameBook;
  changes: HistoryChange[];
  members: { user_id: string }[] | null;
  known: ReadonlyMap<string, string>;
}) {
  const ids = { author: useId(), kind: useId(), path: useId() };
  const [path, setPath] = useState(q.path ?? "");
  useEffect(() => setPath(q.path ?? ""), [q.path]);
  const authors = useMemo(() => {
    const set = new Set<string>(["@server"]);
    for (const m of members ?? []) set.add(m.user_id);
    for (const u of book.users.keys()) set.add(u);
    for (const c of changes) {
      const a = changeAuthor(c, known);
      if (a) set.add(a);
    }
    if (q.author) set.add(q.author);
    return [...set].map((id) => ({ id, name: authorName(id, book) })).sort((a, b) => a.name.localeCompare(b.name));
  }, [members, book, changes, known, q.author]);
  const commitPath = (e?: FormEvent) => {
    e?.preventDefault();
    const p = path.trim();
    if (p !== (q.path ?? "")) setQuery({ path: p || null });
  };
  const any = q.author || q.kind || q.path;
  return (
    <form className="history-filters" onSubmit={commitPath} aria-label="Filter the timeline">
      <div className="field">
        <label htmlFor={ids.author}>Author</label>
        <select id={ids.author} value={q.author ?? ""} onChange={(e) => setQuery({ author: e.target.value || null })}>
          <option value="">Everyone</option>
          {authors.map((a) => (
            <option key={a.id} value={a.id}>
              {a.name}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={ids.kind}>Kind</label>
        <select
          id={ids.kind}
          value={q.kind ?? ""}
          onChange={(e) => setQuery({ kind: e.target.value || null })}
          disabled={!!q.path}
          title={q.path ? "The path below is used instead" : undefined}
        >
          <option value="">Everything</option>
          {KINDS.map((k) => (
            <option key={k.value} value={k.value}>
              {k.label}
            </option>
          ))}
        </select>
      </div>
      <div className="field history-path">
        <label htmlFor={ids.path}>Path</label>
        <input
          id={ids.path}
          type="search"
          value={path}
          placeholder="learnings/lrn_… or notes"
          spellCheck={false}
          autoCapitalize="off"
          onChange={(e) => setPath(e.target.value)}
          onBlur={() => commitPath()}
        />
      </div>
      <button type="button" className="btn btn-small history-clear" disabled={!any} onClick={() => setQuery({ author: null, kind: null, path: null })}>
        Clear filters
      </button>
    </form>
  );
}

// ---------------------------------------------------------------- timeline

function Timeline({
  groups,
  tl,
  book,
  selectedHash,
  baseHash,
  onSelect,
  newChanges,
  filtered,
}: {
  groups: ChangeGroup[];
  tl: ReturnType<typeof useTimeline>;
  book: NameBook;
  selectedHash: string | null;
  baseHash: string | null;
  onSelect: (c: HistoryChange, e: MouseEvent) => void;
  newChanges: boolean;
  filtered: boolean;
}) {
  const now = useNow(30_000);
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const scroller = useRef<HTMLDivElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  const toggle = (key: string) =>
    setOpen((s) => {
      const n = new Set(s);
      if (n.has(key)) n.delete(key);
      else n.add(key);
      return n;
    });

  // Keep the selected entry in sight inside the list (never scrolls the page).
  useEffect(() => {
    const box = scroller.current;
    if (!box || !selectedHash || box.scrollHeight <= box.clientHeight) return;
    const el = box.querySelector<HTMLElement>(`[data-hash="${selectedHash}"]`) ?? box.querySelector<HTMLElement>(`[data-contains~="${selectedHash}"]`);
    if (!el) return;
    const r = el.getBoundingClientRect();
    const b = box.getBoundingClientRect();
    if (r.top < b.top) box.scrollTop -= b.top - r.top + 8;
    else if (r.bottom > b.bottom) box.scrollTop += r.bottom - b.bottom + 8;
  }, [selectedHash, open]);

  // Scrolled to the end: the next page.
  const loadMore = tl.loadMore;
  const canLoad = !!tl.next && !tl.loading && !tl.error;
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !canLoad) return;
    const box = scroller.current;
    const scrolls = box && getComputedStyle(box).overflowY !== "visible";
    const io = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore(), { root: scrolls ? box : null, rootMargin: "120px" });
    io.observe(el);
    return () => io.disconnect();
  }, [canLoad, loadMore]);

  return (
    <section className="card history-timeline" aria-labelledby="timeline-heading">
      <header className="card-head">
        <h2 id="timeline-heading">
          Timeline
          {tl.loaded && <span className="count">{filtered ? `${tl.changes.length}${tl.next ? "+" : ""}` : tl.total}</span>}
        </h2>
        <div className="card-actions">
          {newChanges && <span className="tl-new">New changes</span>}
          <button type="button" className="btn btn-small" onClick={tl.reload} disabled={tl.loading} title="Read the timeline again">
            Refresh
          </button>
        </div>
      </header>
      <div className={`tl-scroll ${tl.stale ? "stale" : ""}`} ref={scroller} aria-busy={tl.loading}>
        {tl.error && <ErrorNote>{tl.error}</ErrorNote>}
        {!tl.loaded && !tl.error && <Loading>Reading the history…</Loading>}
        {tl.loaded && !tl.error && groups.length === 0 && <Empty>{filtered ? "No change matches these filters." : "No changes yet."}</Empty>}
        <ol className="timeline">
          {groups.map((g) => {
            const name = authorName(g.author, book);
            const many = g.changes.length > 1;
            const expanded = many && open.has(g.key);
            const containsSel = !!selectedHash && g.changes.some((c) => c.hash === selectedHash);
            const containsBase = !!baseHash && g.changes.some((c) => c.hash === baseHash);
            const headSelected = containsSel && (!many || !expanded);
            const head = g.changes[0]!;
            const range = timeRangeLabel(g.start, g.end, now);
            return (
              <li key={g.key} className="tl-group">
                <div className={`tl-head ${headSelected ? "selected" : ""}`} data-contains={g.changes.map((c) => c.hash).join(" ")}>
                  <Avatar id={g.author ?? "unknown"} name={name} size="sm" />
                  <button
                    type="button"
                    className="tl-main"
                    aria-current={headSelected ? "true" : undefined}
                    onClick={(e) => onSelect(head, e)}
                    title={`${absoluteTime(g.end)}${many ? "" : head.message ? ` · ${head.message}` : ""}\nShift+click: compare with this`}
                    {...(!many ? { "data-hash": head.hash } : {})}
                  >
                    <span className="tl-line">
                      <span className="tl-who">{name}</span>
                      <span className="tl-when">
                        {range}
                        {many && ` · ${g.changes.length} changes`}
                      </span>
                    </span>
                    <span className="tl-summary">{g.summary || head.message || "no visible change"}</span>
                    {!many && g.summary && !redundantMessage(head.message, g.summary) && <span className="tl-msg">{head.message}</span>}
                    {containsBase && (!many || !expanded) && (
                      <span className="tl-base">
                        <Chip tone="info">base</Chip>
                      </span>
                    )}
                  </button>
                  {many && (
                    <button type="button" className="tl-toggle" aria-expanded={expanded} aria-label={`${expanded ? "Hide" : "Show"} the ${g.changes.length} changes by ${name}`} onClick={() => toggle(g.key)}>
                      <span aria-hidden="true">{expanded ? "▾" : "▸"}</span>
                    </button>
                  )}
                </div>
                {expanded && (
                  <ol className="tl-changes">
                    {g.changes.map((c) => {
                      const sel = c.hash === selectedHash;
                      return (
                        <li key={c.hash}>
                          <button
                            type="button"
                            className={`tl-change ${sel ? "selected" : ""}`}
                            data-hash={c.hash}
                            aria-current={sel ? "true" : undefined}
                            onClick={(e) => onSelect(c, e)}
                            title={`${absoluteTime(c.time)}\nShift+click: compare with this`}
                          >
                            <span className="tl-time">{new Date(c.time).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })}</span>
                            <span className="tl-change-text">
                              <span className="tl-summary">{describeChanges([c]) || "no visible change"}</span>
                              {!redundantMessage(c.message, describeChanges([c])) && <span className="tl-msg">{c.message}</span>}
                            </span>
                            {c.hash === baseHash && <Chip tone="info">base</Chip>}
                          </button>
                        </li>
                      );
                    })}
                  </ol>
                )}
              </li>
            );
          })}
        </ol>
        <div ref={sentinel} className="tl-end">
          {tl.next ? (
            <button type="button" className="btn btn-small" onClick={tl.loadMore} disabled={tl.loading} aria-busy={tl.loading}>
              {tl.loading ? "Loading…" : "Load older"}
            </button>
          ) : (
            tl.loaded && groups.length > 0 && <span className="fine">{filtered ? "End of the matching changes" : "The feature was created here"}</span>
          )}
        </div>
      </div>
    </section>
  );
}

// ---------------------------------------------------------------- scrubber

function Scrubber({
  changes,
  nowIsNewest,
  atNow,
  selectedHash,
  whoOf,
  onSelect,
  hasOlder,
  onLoadOlder,
  baseHash,
}: {
  changes: HistoryChange[];
  nowIsNewest: boolean;
  atNow: boolean;
  selectedHash: string | null;
  whoOf: (c: HistoryChange) => string;
  onSelect: (c: HistoryChange | null) => void;
  hasOlder: boolean;
  onLoadOlder: () => void;
  baseHash: string | null;
}) {
  const id = useId();
  // Oldest left. A "now" stop at the right end when the newest listed
  // change is not the document now (filters, or changes made at once).
  const points: (HistoryChange | null)[] = useMemo(() => {
    const p: (HistoryChange | null)[] = [...changes].reverse();
    if (!nowIsNewest) p.push(null);
    return p;
  }, [changes, nowIsNewest]);
  const max = Math.max(0, points.length - 1);
  const found = selectedHash ? points.findIndex((p) => p?.hash === selectedHash) : -1;
  const value = found >= 0 ? found : atNow ? max : -1;
  const point = value >= 0 ? points[value] : undefined;
  const describe = (p: HistoryChange | null | undefined) =>
    p === null ? "Now" : p ? `${absoluteTime(p.time)}, ${whoOf(p)}: ${describeChanges([p]) || p.message || "change"}` : "A version not in the loaded timeline";
  const position = value >= 0 ? `${value + 1} of ${points.length}` : "—";
  return (
    <div className="card scrubber">
      <div className="scrubber-top">
        <label htmlFor={id}>Version</label>
        <span className="scrubber-pos" aria-hidden="true">
          {position}
        </span>
      </div>
      <div className="scrubber-track" style={{ ["--n" as string]: Math.max(1, max) }}>
        <input
          id={id}
          type="range"
          min={0}
          max={max}
          step={1}
          value={value >= 0 ? value : max}
          disabled={points.length < 2}
          aria-valuetext={describe(point)}
          onChange={(e) => {
            const p = points[Number(e.target.value)];
            if (p !== undefined) onSelect(p);
          }}
          className={value < 0 ? "off" : ""}
        />
        {points.length <= 240 && (
          <div className="scrubber-ticks" aria-hidden="true">
            {points.map((p, i) => (
              <span key={p?.hash ?? "now"} className={`tick ${p === null ? "tick-now" : p.hash === baseHash ? "tick-base" : ""}`} style={{ ["--i" as string]: i }} />
            ))}
          </div>
        )}
      </div>
      <div className="scrubber-ends">
        <span>
          {hasOlder ? (
            <button type="button" className="link-button" onClick={onLoadOlder}>
              ‹ Load older
            </button>
          ) : (
            "Created"
          )}
        </span>
        <span>Now</span>
      </div>
    </div>
  );
}

// ---------------------------------------------------------------- the banner

function VersionBanner({
  q,
  selected,
  whoOf,
  loading,
  nowUrl,
  atHeads,
  onCompare,
}: {
  q: HistoryQuery;
  selected: HistoryChange | null;
  whoOf: (c: HistoryChange) => string;
  loading: boolean;
  nowUrl: string;
  atHeads: string[] | null;
  onCompare: (from: string[] | null) => void;
}) {
  const past = !!q.at;
  let text: ReactNode;
  if (!past) {
    text = (
      <>
        <strong>Now</strong>
        <span className="vb-detail">the latest version{selected ? ` · last change ${absoluteTime(selected.time)} by ${whoOf(selected)}` : ""}</span>
      </>
    );
  } else if (selected) {
    text = (
      <>
        <strong>
          As of <time dateTime={new Date(selected.time).toISOString()}>{absoluteTime(selected.time)}</time> — {whoOf(selected)}
        </strong>
        <span className="vb-detail">{selected.message || describeChanges([selected])}</span>
      </>
    );
  } else {
    text = (
      <>
        <strong>As of version {q.at!.map((h) => h.slice(0, 8)).join(", ")}</strong>
        <span className="vb-detail">not in the part of the timeline loaded so far</span>
      </>
    );
  }
  const comparing = !!q.from;
  return (
    <div className={`version-banner ${past ? "past" : "now"}`} aria-live="polite">
      <span className="vb-spin">{loading && <Spinner label="loading the version" />}</span>
      <div className="vb-text">{text}</div>
      <div className="vb-actions">
        {!comparing && selected && selected.parents.length > 0 && (
          <button type="button" className="btn btn-small" onClick={() => onCompare(selected.parents)} title="Compare with the version just before this change">
            What changed
          </button>
        )}
        {!comparing && atHeads && (
          <button type="button" className="btn btn-small" onClick={() => onCompare(atHeads)} title="Then pick another version to see the differences (or Shift+click one in the timeline)">
            Set as base
          </button>
        )}
        {past && (
          <Link to={nowUrl} className="btn btn-small btn-primary">
            Back to now
          </Link>
        )}
      </div>
    </div>
  );
}

// ---------------------------------------------------------------- compare

function ComparePanel({
  q,
  changes,
  whoOf,
  base,
  target,
  patches,
  onStop,
  onSwap,
  canSwap,
}: {
  q: HistoryQuery;
  changes: HistoryChange[];
  whoOf: (c: HistoryChange) => string;
  base: Loaded<unknown>;
  target: Loaded<unknown>;
  patches: Loaded<JsonPatch[]>;
  onStop: () => void;
  onSwap: () => void;
  canSwap: boolean;
}) {
  const label = (heads: string[] | null) => {
    if (!heads) return "now";
    const c = heads.length === 1 ? changes.find((x) => x.hash === heads[0]) : null;
    return c ? `${absoluteTime(c.time)} (${whoOf(c)})` : heads.map((h) => h.slice(0, 8)).join(", ");
  };
  const ready = base.value !== null && target.value !== null && patches.value !== null;
  const sections = useMemo(() => (ready ? diffView(base.value, target.value, patches.value!) : []), [ready, base.value, target.value, patches.value]);
  const same = sameHeads(q.from, q.at);
  const error = base.error ?? patches.error ?? target.error;
  return (
    <section className="card compare" aria-labelledby="compare-heading" aria-busy={!ready || patches.loading}>
      <header className="card-head compare-head">
        <h2 id="compare-heading">
          Changes from <span className="compare-point">{label(q.from)}</span> to <span className="compare-point">{label(q.at)}</span>
        </h2>
        <div className="card-actions">
          <button type="button" className="btn btn-small" onClick={onSwap} disabled={!canSwap} title="Show the other direction">
            Swap
          </button>
          <button type="button" className="btn btn-small" onClick={onStop}>
            Stop comparing
          </button>
        </div>
      </header>
      {error ? (
        <ErrorNote>{error}</ErrorNote>
      ) : same ? (
        <Empty>This is the base. Pick another version (the scrubber or the timeline) to see what changed between the two.</Empty>
      ) : !ready ? (
        <Loading>Comparing…</Loading>
      ) : sections.length === 0 ? (
        <Empty>No differences between these two versions.</Empty>
      ) : (
        <DiffSections sections={sections} />
      )}
    </section>
  );
}

const STATUS_TONE = { added: "good", deleted: "bad", edited: "info" } as const;

function DiffSections({ sections }: { sections: DiffSection[] }) {
  return (
    <div className="diff-sections">
      {sections.map((s) => (
        <div key={s.kind} className="diff-section">
          <h3>
            {s.title} <span className="count">{s.items.length}</span>
          </h3>
          <ul className="diff-items">
            {s.items.map((item) => (
              <li key={item.key} className={`diff-item diff-${item.status}`}>
                <div className="diff-item-head">
                  <Chip tone={STATUS_TONE[item.status]}>{item.status}</Chip>
                  {item.labelShown && <span className="diff-label">{item.label}</span>}
                </div>
                {item.fields.map((f) => (
                  <FieldChange key={f.field} f={f} />
                ))}
              </li>
            ))}
          </ul>
        </div>
      ))}
    </div>
  );
}

function FieldChange({ f }: { f: FieldDiff }) {
  const name = f.field ? <span className="diff-field-name">{f.field.replace(/_/g, " ")}</span> : null;
  if (f.type === "value") {
    return (
      <div className="diff-field">
        {name}
        <span className="diff-value">
          {f.before !== null && <del>{f.before || "(empty)"}</del>}
          {f.before !== null && f.after !== null && <span className="diff-arrow"> → </span>}
          {f.after !== null && <ins>{f.after || "(empty)"}</ins>}
        </span>
      </div>
    );
  }
  return (
    <div className="diff-field">
      {name}
      <p className="diff-text">
        {withContext(f.segments).map((s, i) =>
          s.op === "ins" ? (
            <ins key={i}>{s.text}</ins>
          ) : s.op === "del" ? (
            <del key={i}>{s.text}</del>
          ) : s.op === "gap" ? (
            <span key={i} className="diff-gap" title="unchanged text left out">
              …
            </span>
          ) : (
            <span key={i}>{s.text}</span>
          ),
        )}
      </p>
    </div>
  );
}

// ---------------------------------------------------------------- the version

interface RestoreProps {
  /** The document now (plain JSON), or null when showing now. */
  nowDoc: unknown;
  writable: boolean;
  online: boolean;
  onRestore: (path: string[], label: string) => Promise<void>;
}

/** "Restore this" for a value that is not the same now; says what
 * changed. Viewers see it disabled, with why. */
function Restore({ path, label, then, r }: { path: string[]; label: string; then: unknown; r: RestoreProps }) {
  if (r.nowDoc === null) return null;
  const state: RestoreState = restoreState(then, r.nowDoc, path);
  if (state === "same") return null;
  const why = !r.writable ? "Viewers cannot restore" : !r.online ? "Needs a connection" : state === "gone" ? `Put this ${label} back` : `Replace the current ${label} with this version`;
  return (
    <span className="restore">
      <Chip tone={state === "gone" ? "warn" : "info"}>{state === "gone" ? "deleted since" : "changed since"}</Chip>
      <span title={why} className="restore-wrap">
        <AsyncButton
          className="btn btn-small"
          disabled={!r.writable || !r.online}
          title={why}
          confirm={state === "changed" ? `Replace the current ${label} with this version? (The current one stays in the history.)` : undefined}
          onClick={() => r.onRestore(path, label)}
        >
          Restore this
        </AsyncButton>
      </span>
    </span>
  );
}

function VersionView({
  doc,
  nowDoc,
  book,
  busy,
  writable,
  online,
  onRestore,
}: {
  doc: unknown;
  nowDoc: unknown;
  book: NameBook;
  busy: boolean;
  writable: boolean;
  online: boolean;
  onRestore: (path: string[], label: string) => Promise<void>;
}) {
  const now = useNow(30_000);
  const v: FeatureView = useMemo(() => readFeature(doc), [doc]);
  const r: RestoreProps = { nowDoc, writable, online, onRestore };
  const learnings = [...v.learnings].reverse();
  const decisions = [...v.decisions].reverse();
  const queue = [...v.queue].reverse().slice(0, 20);
  return (
    <div className={`version ${busy ? "busy" : ""}`}>
      <section className="card version-head" aria-label="Title and description">
        <div className="version-row">
          <h2 className="version-title">{v.title || "Untitled feature"}</h2>
          <Restore path={["title"]} label="title" then={doc} r={r} />
        </div>
        <div className="version-row">
          <p className="feature-desc">{v.description || <span className="muted">No description.</span>}</p>
          <Restore path={["description"]} label="description" then={doc} r={r} />
        </div>
      </section>

      <Section title="Learnings" count={v.learnings.length}>
        {learnings.length === 0 ? (
          <Empty>No learnings at this point.</Empty>
        ) : (
          <ul className="know-list">
            {learnings.map((l) => (
              <li key={l.id} className="know-item">
                <LearningText importance={l.importance} text={l.text} />
                <div className="know-meta version-meta">
                  <span>
                    {authorName(l.author, book)} · <Time ms={l.createdAt} now={now} />
                  </span>
                  <Restore path={["learnings", l.id]} label="learning" then={doc} r={r} />
                </div>
              </li>
            ))}
          </ul>
        )}
      </Section>

      <Section title="Decisions" count={v.decisions.length}>
        {decisions.length === 0 ? (
          <Empty>No decisions at this point.</Empty>
        ) : (
          <ul className="know-list">
            {decisions.map((x) => (
              <li key={x.id} className="know-item">
                <p className="know-text">
                  <strong>{x.decision}</strong>
                </p>
                {x.rationale && <p className="know-rationale">{x.rationale}</p>}
                {x.alternatives.length > 0 && <p className="know-alts">Instead of: {x.alternatives.join(" · ")}</p>}
                <div className="know-meta version-meta">
                  <span>
                    {authorName(x.author, book)} · <Time ms={x.createdAt} now={now} />
                  </span>
                  <Restore path={["decisions", x.id]} label="decision" then={doc} r={r} />
                </div>
              </li>
            ))}
          </ul>
        )}
      </Section>

      <Section title="Notes">
        <div className="version-notes-wrap">
          {v.notes ? <p className="version-notes">{v.notes}</p> : <Empty>No notes at this point.</Empty>}
          <div className="version-meta">
            <span />
            <Restore path={["notes"]} label="notes" then={doc} r={r} />
          </div>
        </div>
      </Section>

      <Section title="Key files" count={v.keyFiles.length}>
        {v.keyFiles.length === 0 ? (
          <Empty>No key files at this point.</Empty>
        ) : (
          <ul className="keyfile-list">
            {v.keyFiles.map((k) => (
              <li key={k.path} className="keyfile">
                <div className="keyfile-top">
                  <code className="path">{k.path}</code>
                  <Restore path={["key_files", k.path]} label="key file" then={doc} r={r} />
                </div>
                {k.note && <p className="keyfile-note">{k.note}</p>}
              </li>
            ))}
          </ul>
        )}
      </Section>

      <div className="version-pair">
        <Section title="Queue" count={v.queue.length}>
          {queue.length === 0 ? (
            <Empty>No prompts at this point.</Empty>
          ) : (
            <ol className="version-queue">
              {queue.map((e) => (
                <li key={e.id}>
                  <Chip tone={queueTone(e.status)}>{e.status}</Chip>
                  <span className="version-queue-text">{e.text}</span>
                  <span className="fine">
                    {authorName(e.author, book)} · {book.sessions.get(e.sessionId) ?? v.sessions.find((s) => s.id === e.sessionId)?.title ?? e.sessionId}
                  </span>
                </li>
              ))}
              {v.queue.length > queue.length && <li className="fine">and {plural(v.queue.length - queue.length, "older prompt")}</li>}
            </ol>
          )}
        </Section>
        <Section title="Sessions" count={v.sessions.length}>
          {v.sessions.length === 0 ? (
            <Empty>No sessions at this point.</Empty>
          ) : (
            <ul className="version-sessions">
              {v.sessions.map((s) => (
                <li key={s.id}>
                  <span className="version-session-title">{s.title || s.id}</span>
                  <Chip tone={sessionTone(s.status)}>{s.status}</Chip>
                </li>
              ))}
            </ul>
          )}
        </Section>
      </div>
    </div>
  );
}
