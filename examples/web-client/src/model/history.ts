/**
 * The history browser's pure logic: the server's history payloads, who an
 * author is, what a change (or a run of changes) did in words, the view's
 * URL state, a word-level text diff, the diff between two versions grouped
 * by item, and whether a value of an old version can be restored.
 *
 * The server's reads (`GET /api/features/{id}/history|at|diff`) give JSON
 * documents with plain strings and numbers; the live document gives
 * Automerge values (scalar strings, counters, dates). `plain` brings the
 * second to the first so the two can be compared.
 */
import * as A from "@automerge/automerge/slim";
import { isImmutableString } from "../doc/values";
import { plural } from "./format";

// ------------------------------------------------------------ payloads

export type TouchAction = "added" | "edited" | "deleted";

/** One thing a change touched (`summary.touched[]`). */
export interface Touch {
  /** The top-level key: `learnings`, `notes`, `sessions`, `title`, … */
  kind: string;
  /** A list item's `id` or a map entry's key. */
  id?: string;
  action: TouchAction;
  /** Fields of the item edited (only for `edited`). */
  fields?: string[];
  /** Characters inserted into / deleted from text. */
  inserted?: number;
  deleted?: number;
}

export interface HistoryChange {
  hash: string;
  parents: string[];
  /** Unix ms (whole seconds: Automerge keeps seconds). */
  time: number;
  /** `usr_…`, `agent:<session id>`, `@server`, or null when unknown. */
  author: string | null;
  actor: string;
  seq: number;
  message: string | null;
  summary: { touched: Touch[]; ops: number };
}

/** `GET …/history`: newest first. */
export interface HistoryPage {
  changes: HistoryChange[];
  next: string | null;
  total: number;
  heads: string[];
}

/** One patch of `GET …/diff`, applied in order to the document at `from`. */
export interface JsonPatch {
  path: (string | number)[];
  action: "put" | "insert" | "delete" | "splice_text" | "increment";
  key?: string;
  index?: number;
  value?: unknown;
  values?: unknown[];
  length?: number;
  by?: number;
  old?: unknown;
}

/** `POST …/restore`. `change` is null when nothing differed. */
export interface Restored {
  change: string | null;
  message: string;
  heads: string[];
}

/** The history filters, as the server takes them. */
export interface HistoryFilter {
  author: string | null;
  path: string | null;
}

// ------------------------------------------------------------ authors

/** Who is who: user ids to names, session ids to titles. */
export interface NameBook {
  users: ReadonlyMap<string, string>;
  sessions: ReadonlyMap<string, string>;
}

export function nameBook(
  members: readonly { user_id: string; display_name: string; handle: string }[] | null,
  participants: readonly { userId: string; name: string }[],
  sessions: readonly { id: string; title: string }[],
): NameBook {
  const users = new Map<string, string>();
  // The document's participants mirror first; the members endpoint (current
  // display names) wins.
  for (const p of participants) if (p.name && p.name !== p.userId) users.set(p.userId, p.name);
  for (const m of members ?? []) users.set(m.user_id, m.display_name || m.handle || m.user_id);
  return { users, sessions: new Map(sessions.map((s) => [s.id, s.title || s.id])) };
}

/** A person's name for an author string. */
export function authorName(author: string | null, book: NameBook): string {
  if (!author) return "Unknown";
  if (author === "@server") return "Canopy";
  if (author.startsWith("agent:")) {
    const sid = author.slice("agent:".length);
    return `Agent · ${book.sessions.get(sid) ?? sid}`;
  }
  return book.users.get(author) ?? author;
}

/** The author to show for a change: the server names the caller of a
 * restore only once its origin row is written (batched), so for a moment
 * the change reads as `@server`; `known` holds what this page itself did. */
export function changeAuthor(change: HistoryChange, known: ReadonlyMap<string, string>): string | null {
  return known.get(change.hash) ?? change.author;
}

// ------------------------------------------------------------ summaries

const NOUNS: Record<string, [string, string]> = {
  learnings: ["learning", "learnings"],
  decisions: ["decision", "decisions"],
  queue: ["prompt", "prompts"],
  sessions: ["session", "sessions"],
  key_files: ["key file", "key files"],
  participants: ["member", "members"],
};
const TEXT_KINDS: Record<string, string> = { notes: "notes", title: "the title", description: "the description" };

/** The kinds the filter offers (`path=<kind>`). */
export const KINDS: readonly { value: string; label: string }[] = [
  { value: "learnings", label: "Learnings" },
  { value: "decisions", label: "Decisions" },
  { value: "queue", label: "Queue" },
  { value: "notes", label: "Notes" },
  { value: "sessions", label: "Sessions" },
  { value: "key_files", label: "Key files" },
  { value: "title", label: "Title" },
  { value: "description", label: "Description" },
];

function counts(inserted: number, deleted: number): string {
  const parts = [inserted ? `+${inserted}` : "", deleted ? `−${deleted}` : ""].filter(Boolean);
  return parts.length ? ` (${parts.join(" ")})` : "";
}

function itemVerb(kind: string, action: TouchAction): string {
  if (kind === "queue") return action === "added" ? "queued" : action === "edited" ? "updated" : "removed";
  return action;
}

function nounFor(kind: string): [string, string] {
  return NOUNS[kind] ?? [kind.replace(/_/g, " "), kind.replace(/_/g, " ")];
}

function countNoun(n: number, kind: string): string {
  const [one, many] = nounFor(kind);
  if (n !== 1) return `${n} ${many}`;
  return `${/^[aeiou]/.test(one) ? "an" : "a"} ${one}`;
}

interface ItemTally {
  kind: string;
  actions: Set<TouchAction>;
  inserted: number;
  deleted: number;
  fields: Set<string>;
}

/**
 * What changes did, in words: "added 2 learnings, edited notes (+34 −5)".
 * `changes` are newest first, as the history lists them (causal order:
 * times are whole seconds and writers' clocks differ, so they cannot order
 * changes). Touches that only create a top-level container (every
 * feature's first change) are left out; a change without parents reads
 * "created the feature".
 */
export function describeChanges(changes: readonly HistoryChange[], maxPhrases = 4): string {
  const ordered = [...changes].reverse();
  const phrases: string[] = [];
  if (ordered.some((c) => c.parents.length === 0)) phrases.push("created the feature");
  // Buckets keyed by "item kind" or "text kind" or "field", in first-seen order.
  const items = new Map<string, ItemTally>();
  const texts = new Map<string, { kind: string; inserted: number; deleted: number; cleared: boolean }>();
  const fields = new Set<string>();
  const order: string[] = [];
  const see = (key: string) => {
    if (!order.includes(key)) order.push(key);
  };
  for (const change of ordered) {
    if (change.parents.length === 0) continue;
    for (const t of change.summary.touched) {
      if (t.id !== undefined) {
        const key = `${t.kind}\u0000${t.id}`;
        const tally = items.get(key) ?? { kind: t.kind, actions: new Set(), inserted: 0, deleted: 0, fields: new Set() };
        tally.actions.add(t.action);
        tally.inserted += t.inserted ?? 0;
        tally.deleted += t.deleted ?? 0;
        for (const f of t.fields ?? []) tally.fields.add(f);
        items.set(key, tally);
        see(`item:${t.kind}`);
      } else if (t.kind in NOUNS) {
        // The container itself: made with the feature, or replaced whole.
        if (t.action !== "added") {
          fields.add(t.kind);
          see(`field:${t.kind}`);
        }
      } else if (t.kind in TEXT_KINDS) {
        const x = texts.get(t.kind) ?? { kind: t.kind, inserted: 0, deleted: 0, cleared: false };
        x.inserted += t.inserted ?? 0;
        x.deleted += t.deleted ?? 0;
        if (t.action === "deleted") x.cleared = true;
        texts.set(t.kind, x);
        see(`text:${t.kind}`);
      } else {
        fields.add(t.kind);
        see(`field:${t.kind}`);
      }
    }
  }
  for (const key of order) {
    const [type, kind] = key.split(":", 2) as [string, string];
    if (type === "item") {
      const mine = [...items.values()].filter((x) => x.kind === kind);
      // An item added (or deleted) in these changes counts as that, not as
      // also edited.
      for (const action of ["added", "edited", "deleted"] as const) {
        const hit = mine.filter((x) => (action === "edited" ? !x.actions.has("added") && !x.actions.has("deleted") : x.actions.has(action)));
        if (hit.length === 0) continue;
        let extra = "";
        if (action === "edited") {
          const ins = hit.reduce((n, x) => n + x.inserted, 0);
          const del = hit.reduce((n, x) => n + x.deleted, 0);
          extra = counts(ins, del);
          if (!extra && hit.length === 1 && hit[0]!.fields.size > 0) extra = ` (${[...hit[0]!.fields].join(", ")})`;
        }
        phrases.push(`${itemVerb(kind, action)} ${countNoun(hit.length, kind)}${extra}`);
      }
    } else if (type === "text") {
      const x = texts.get(kind)!;
      phrases.push(`${x.cleared ? "cleared" : "edited"} ${TEXT_KINDS[kind]}${counts(x.inserted, x.deleted)}`);
    } else {
      phrases.push(`changed ${kind.replace(/_/g, " ")}`);
    }
  }
  if (phrases.length > maxPhrases) {
    const rest = phrases.length - (maxPhrases - 1);
    return [...phrases.slice(0, maxPhrases - 1), `${rest} more`].join(", ");
  }
  return phrases.join(", ");
}

/** Words of a phrase with their endings cut ("deleted" and "delete" both
 * read "delet"), without articles. */
function stems(text: string): string[] {
  return (text.toLowerCase().match(/[a-z]+/g) ?? []).filter((w) => !["a", "an", "the"].includes(w)).map((w) => w.replace(/ed$/, "").replace(/e$/, ""));
}

/** Whether a change's message only says what its summary says ("delete a
 * learning" next to "deleted a learning"), so the view can leave it out. */
export function redundantMessage(message: string | null, summary: string): boolean {
  if (!message) return true;
  const have = new Set(stems(summary));
  const words = stems(message);
  return words.length > 0 && words.every((w) => have.has(w));
}

// ------------------------------------------------------------ grouping

export interface ChangeGroup {
  /** The newest change's hash: stable while older pages load. */
  key: string;
  author: string | null;
  /** Oldest and newest change time (Unix ms). */
  start: number;
  end: number;
  /** Newest first, as listed. */
  changes: HistoryChange[];
  summary: string;
}

export const GROUP_WINDOW_MS = 5 * 60_000;

/**
 * Consecutive changes (newest first) by the same author, each within
 * `windowMs` of the next, form one group: a burst of typing or one person's
 * sitting reads as one line.
 */
export function groupChanges(changes: readonly HistoryChange[], known: ReadonlyMap<string, string> = new Map(), windowMs = GROUP_WINDOW_MS): ChangeGroup[] {
  const groups: ChangeGroup[] = [];
  let current: ChangeGroup | null = null;
  for (const c of changes) {
    const author = changeAuthor(c, known);
    const last = current?.changes[current.changes.length - 1];
    if (current && last && current.author === author && Math.abs(last.time - c.time) <= windowMs) {
      current.changes.push(c);
      current.start = Math.min(current.start, c.time);
      current.end = Math.max(current.end, c.time);
      continue;
    }
    current = { key: c.hash, author, start: c.time, end: c.time, changes: [c], summary: "" };
    groups.push(current);
  }
  for (const g of groups) g.summary = describeChanges(g.changes);
  return groups;
}

/** "14:02", "14:02–14:07", or with the day when it is not today. */
export function timeRangeLabel(start: number, end: number, now: number): string {
  const clock = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const day = (ms: number) => {
    const d = new Date(ms);
    const today = new Date(now);
    if (d.toDateString() === today.toDateString()) return "";
    const yesterday = new Date(now - 86_400_000);
    if (d.toDateString() === yesterday.toDateString()) return "Yesterday ";
    const sameYear = d.getFullYear() === today.getFullYear();
    return `${d.toLocaleDateString(undefined, sameYear ? { month: "short", day: "numeric" } : { year: "numeric", month: "short", day: "numeric" })} `;
  };
  const a = `${day(start)}${clock(start)}`;
  if (clock(start) === clock(end) && day(start) === day(end)) return a;
  return day(start) === day(end) ? `${a}–${clock(end)}` : `${a} – ${day(end)}${clock(end)}`;
}

// ------------------------------------------------------------ URL state

/** What the history view's URL carries (`/f/:id/history?…`). */
export interface HistoryQuery {
  /** The version shown; null = now. */
  at: string[] | null;
  /** The diff base; null = no diff. */
  from: string[] | null;
  author: string | null;
  kind: string | null;
  path: string | null;
}

export const EMPTY_QUERY: HistoryQuery = { at: null, from: null, author: null, kind: null, path: null };

function headsParam(raw: string | null): string[] | null {
  if (raw === null) return null;
  const heads = [...new Set(raw.split(",").map((h) => h.trim()).filter(Boolean))];
  return heads.length ? heads : null;
}

function textParam(raw: string | null): string | null {
  const v = raw?.trim();
  return v ? v : null;
}

export function parseHistoryQuery(search: string): HistoryQuery {
  const p = new URLSearchParams(search);
  return {
    at: headsParam(p.get("at")),
    from: headsParam(p.get("from")),
    author: textParam(p.get("author")),
    kind: textParam(p.get("kind")),
    path: textParam(p.get("path")),
  };
}

/** Query-string encoding that leaves `,`, `:`, `/` and `@` readable. */
function enc(v: string): string {
  return encodeURIComponent(v).replace(/%2C/g, ",").replace(/%3A/g, ":").replace(/%2F/g, "/").replace(/%40/g, "@");
}

/** `?at=…&from=…&author=…&kind=…&path=…` (empty parts left out), or "". */
export function formatHistoryQuery(q: HistoryQuery): string {
  const parts: string[] = [];
  if (q.at?.length) parts.push(`at=${q.at.map(enc).join(",")}`);
  if (q.from?.length) parts.push(`from=${q.from.map(enc).join(",")}`);
  if (q.author) parts.push(`author=${enc(q.author)}`);
  if (q.kind) parts.push(`kind=${enc(q.kind)}`);
  if (q.path) parts.push(`path=${enc(q.path)}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

/** The API's filters: a typed path wins over the kind. */
export function historyFilter(q: HistoryQuery): HistoryFilter {
  return { author: q.author, path: q.path ?? q.kind };
}

export function sameHeads(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (!a || !b || a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((h) => set.has(h));
}

// ------------------------------------------------------------ text diff

export type SegmentOp = "same" | "ins" | "del" | "gap";
export interface Segment {
  op: SegmentOp;
  text: string;
}

/** Words, runs of white space, and single other characters. */
export function tokenize(text: string): string[] {
  return text.match(/[\p{L}\p{N}_'’-]+|\s+|[^\p{L}\p{N}_\s]/gu) ?? [];
}

/** Past this many token pairs the middle is shown as one replacement. */
const DIFF_CELLS = 4_000_000;

function push(out: Segment[], op: SegmentOp, text: string) {
  if (!text) return;
  const last = out[out.length - 1];
  if (last && last.op === op) last.text += text;
  else out.push({ op, text });
}

/**
 * A word-level diff of `before` → `after`: `same`, `del` and `ins` segments
 * whose `same`+`del` texts make `before` and `same`+`ins` texts make `after`.
 * Within a run of changes deletions come first; white space alone between
 * two changes is folded into them, so "a b c" → "x y z" reads as one
 * replacement rather than three.
 */
export function diffWords(before: string, after: string): Segment[] {
  if (before === after) return before ? [{ op: "same", text: before }] : [];
  const a = tokenize(before);
  const b = tokenize(after);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const raw: Segment[] = [];
  push(raw, "same", a.slice(0, pre).join(""));
  const n = am.length;
  const m = bm.length;
  if (n === 0 || m === 0 || (n + 1) * (m + 1) > DIFF_CELLS) {
    push(raw, "del", am.join(""));
    push(raw, "ins", bm.join(""));
  } else {
    // Longest common subsequence, filled from the end so the walk runs forward.
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (am[i] === bm[j]) {
        push(raw, "same", am[i]!);
        i++;
        j++;
      } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
        push(raw, "del", am[i++]!);
      } else {
        push(raw, "ins", bm[j++]!);
      }
    }
    while (i < n) push(raw, "del", am[i++]!);
    while (j < m) push(raw, "ins", bm[j++]!);
  }
  push(raw, "same", a.slice(a.length - suf).join(""));
  return tidy(raw);
}

/** Fold white space between two changes into them; deletions first. */
function tidy(segments: Segment[]): Segment[] {
  const out: Segment[] = [];
  let del = "";
  let ins = "";
  const flush = () => {
    push(out, "del", del);
    push(out, "ins", ins);
    del = "";
    ins = "";
  };
  segments.forEach((s, k) => {
    const changed = (x: Segment | undefined) => !!x && x.op !== "same";
    if (s.op === "same" && /^\s+$/.test(s.text) && changed(segments[k - 1]) && changed(segments[k + 1])) {
      del += s.text;
      ins += s.text;
    } else if (s.op === "del") del += s.text;
    else if (s.op === "ins") ins += s.text;
    else {
      flush();
      push(out, s.op, s.text);
    }
  });
  flush();
  return out;
}

/**
 * Shorten long unchanged stretches to `context` characters on each side of
 * a change (a `gap` segment stands for what was left out), so a one-word
 * edit in long notes shows as that word in its sentence.
 */
export function withContext(segments: readonly Segment[], context = 80): Segment[] {
  if (!segments.some((s) => s.op === "ins" || s.op === "del")) return [...segments];
  const out: Segment[] = [];
  segments.forEach((s, k) => {
    if (s.op !== "same" || s.text.length <= context * 2 + 20) {
      out.push({ ...s });
      return;
    }
    const first = k === 0;
    const last = k === segments.length - 1;
    const chars = [...s.text];
    const head = first ? "" : cutAtSpace(chars.slice(0, context).join(""), "end");
    const tail = last ? "" : cutAtSpace(chars.slice(chars.length - context).join(""), "start");
    if (head) out.push({ op: "same", text: head });
    out.push({ op: "gap", text: "…" });
    if (tail) out.push({ op: "same", text: tail });
  });
  return out;
}

/** Trim a context snippet back to a word boundary when there is one near. */
function cutAtSpace(text: string, keep: "start" | "end"): string {
  if (keep === "end") {
    const i = text.lastIndexOf(" ");
    return i > text.length / 2 ? text.slice(0, i + 1) : text;
  }
  const i = text.indexOf(" ");
  return i >= 0 && i < text.length / 2 ? text.slice(i) : text;
}

// ------------------------------------------------------------ versions compared

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** An Automerge value (live document) as the server's JSON would show it. */
export function plain(value: unknown): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "bigint") return Number(value);
  if (isImmutableString(value)) return value.val;
  if (value instanceof Date) return value.getTime();
  if (value instanceof Uint8Array) {
    let s = "";
    for (const b of value) s += String.fromCharCode(b);
    return btoa(s);
  }
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    if (A.isCounter(value)) return value.value;
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return null;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = Object.keys(ao);
  if (keys.length !== Object.keys(bo).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && deepEqual(ao[k], bo[k]));
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function idOf(item: unknown): string | null {
  const id = asRecord(item)?.id;
  if (isImmutableString(id)) return id.val || null;
  return typeof id === "string" && id ? id : null;
}

/** The value at `path` in a JSON document: map keys, list items by `id`. */
export function valueAt(doc: unknown, path: readonly string[]): unknown {
  let cur: unknown = doc;
  for (const seg of path) {
    if (Array.isArray(cur)) cur = cur.find((x) => idOf(x) === seg);
    else cur = asRecord(cur)?.[seg];
    if (cur === undefined) return undefined;
  }
  return cur;
}

export type RestoreState = "same" | "changed" | "gone";

/** How the value at `path` of an old version stands now: the same,
 * changed, or gone (restoring puts it back). */
export function restoreState(then: unknown, now: unknown, path: readonly string[]): RestoreState {
  const a = valueAt(then, path);
  const b = valueAt(now, path);
  if (b === undefined || b === null) return a === undefined || a === null ? "same" : "gone";
  return deepEqual(plain(a), plain(b)) ? "same" : "changed";
}

/** What the server restores (`RESTORABLE` on its side): top-level keys. */
export const RESTORABLE_KINDS: readonly string[] = ["learnings", "decisions", "key_files", "notes", "title", "description"];

/** A path as the restore endpoint and the path filter write it. */
export function pathString(path: readonly string[]): string {
  return path.map((s) => s.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
}

// ------------------------------------------------------------ the diff view

export type FieldDiff =
  | { field: string; type: "text"; segments: Segment[] }
  | { field: string; type: "value"; before: string | null; after: string | null };

export interface DiffItem {
  /** `kind/id`, unique in the view. */
  key: string;
  kind: string;
  id: string | null;
  label: string;
  /** The label only repeats a field shown whole below (an item added or
   * deleted): the view can leave it out. */
  labelShown: boolean;
  status: "added" | "deleted" | "edited";
  fields: FieldDiff[];
}

export interface DiffSection {
  kind: string;
  title: string;
  items: DiffItem[];
  /** Patches that touched this kind. */
  patches: number;
}

const SECTION_ORDER = ["title", "description", "notes", "learnings", "decisions", "key_files", "queue", "sessions", "participants"];
const SECTION_TITLES: Record<string, string> = {
  title: "Title",
  description: "Description",
  notes: "Notes",
  learnings: "Learnings",
  decisions: "Decisions",
  key_files: "Key files",
  queue: "Queue",
  sessions: "Sessions",
  participants: "Members",
};
/** The fields that say what an item is, shown whole when it comes or goes. */
const PRIMARY: Record<string, string[]> = {
  learnings: ["text", "importance", "files"],
  decisions: ["decision", "rationale", "alternatives"],
  queue: ["text", "status"],
  sessions: ["title", "scope", "status"],
  key_files: ["note"],
  participants: ["name", "role"],
};
const LABEL_FIELD: Record<string, string> = { learnings: "text", decisions: "decision", queue: "text", sessions: "title", participants: "name" };
/** Machine values: shown as "before → after", never as a text diff. */
const VALUE_FIELDS = new Set(["id", "status", "importance", "author", "role", "session_id", "created_by", "from_session", "backend", "state", "branch", "head"]);

function show(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v.join(", ");
  return JSON.stringify(v);
}

/** Leaves of a value as `a.b` → value, arrays of scalars kept whole. */
function leaves(value: unknown, prefix = "", depth = 0, out = new Map<string, unknown>()): Map<string, unknown> {
  const rec = asRecord(value);
  if (rec && depth < 3) {
    for (const [k, v] of Object.entries(rec)) leaves(v, prefix ? `${prefix}.${k}` : k, depth + 1, out);
  } else {
    out.set(prefix, value);
  }
  return out;
}

function fieldDiff(field: string, before: unknown, after: unknown): FieldDiff | null {
  if (deepEqual(before, after)) return null;
  const b = before ?? null;
  const a = after ?? null;
  const leaf = field.split(".").pop() ?? field;
  const texty = (v: unknown) => v === null || typeof v === "string";
  if (texty(b) && texty(a) && !VALUE_FIELDS.has(leaf) && (b !== null || a !== null)) {
    return { field, type: "text", segments: diffWords((b as string | null) ?? "", (a as string | null) ?? "") };
  }
  return { field, type: "value", before: show(b), after: show(a) };
}

function itemLabel(kind: string, id: string | null, item: unknown): string {
  const field = LABEL_FIELD[kind];
  const text = field ? show(asRecord(item)?.[field]) : null;
  const short = (s: string) => (s.length > 80 ? `${s.slice(0, 79)}…` : s);
  if (text) return short(text.split("\n")[0]!);
  return id ?? SECTION_TITLES[kind] ?? kind;
}

function itemDiff(kind: string, id: string | null, before: unknown, after: unknown): DiffItem | null {
  if (deepEqual(before ?? null, after ?? null)) return null;
  const status = before === undefined || before === null ? "added" : after === undefined || after === null ? "deleted" : "edited";
  const fields: FieldDiff[] = [];
  const key = id === null ? kind : `${kind}/${id}`;
  const label = itemLabel(kind, id, after ?? before);
  const whole = status !== "edited";
  if (asRecord(before) || asRecord(after)) {
    const lb = leaves(before ?? {});
    const la = leaves(after ?? {});
    const names = status === "edited" ? [...new Set([...lb.keys(), ...la.keys()])] : (PRIMARY[kind] ?? [...new Set([...lb.keys(), ...la.keys()])]).filter((f) => lb.has(f) || la.has(f));
    for (const name of names) {
      const value = lb.get(name) ?? la.get(name);
      // An item shown whole: its empty fields say nothing.
      if (whole && (value === "" || value === null || (Array.isArray(value) && value.length === 0))) continue;
      const d = fieldDiff(name, lb.get(name), la.get(name));
      if (d) fields.push(d);
    }
  } else {
    const d = fieldDiff("", before, after);
    if (d) fields.push(d);
  }
  const labelShown = id !== null && !(whole && LABEL_FIELD[kind] !== undefined && fields.some((f) => f.field === LABEL_FIELD[kind]));
  return { key, kind, id, label, labelShown, status, fields };
}

/** Items of a top-level value: list items by id (index when they have
 * none), map entries by key. */
function items(value: unknown): Map<string, unknown> | null {
  if (Array.isArray(value)) return new Map(value.map((x, i) => [idOf(x) ?? `#${i}`, x]));
  const rec = asRecord(value);
  return rec ? new Map(Object.entries(rec)) : null;
}

/**
 * The differences between two versions, grouped by what they belong to:
 * the top-level kinds the patches touched, and within each the items (list
 * items matched by `id`, map entries by key) that differ, with text fields
 * as word diffs. Computed from the two documents rather than from patch
 * indexes, which shift as patches apply; the patches say where to look.
 */
export function diffView(from: unknown, to: unknown, patches: readonly JsonPatch[]): DiffSection[] {
  const touched = new Map<string, number>();
  for (const p of patches) {
    const kind = p.path.length ? String(p.path[0]) : p.key;
    if (kind !== undefined) touched.set(kind, (touched.get(kind) ?? 0) + 1);
  }
  const fromDoc = asRecord(from) ?? {};
  const toDoc = asRecord(to) ?? {};
  const rank = (k: string) => (SECTION_ORDER.includes(k) ? SECTION_ORDER.indexOf(k) : SECTION_ORDER.length);
  const kinds = [...touched.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const sections: DiffSection[] = [];
  for (const kind of kinds) {
    const before = fromDoc[kind];
    const after = toDoc[kind];
    const out: DiffItem[] = [];
    const bi = items(before);
    const ai = items(after);
    if (bi && ai) {
      for (const id of new Set([...bi.keys(), ...ai.keys()])) {
        const d = itemDiff(kind, id.startsWith("#") ? null : id, bi.get(id), ai.get(id));
        if (d) out.push(d);
      }
    } else {
      const d = itemDiff(kind, null, before, after);
      if (d) out.push(d);
    }
    if (out.length) sections.push({ kind, title: SECTION_TITLES[kind] ?? kind.replace(/_/g, " "), items: out, patches: touched.get(kind)! });
  }
  return sections;
}

/** "1 change" / "12 changes" (shared by the view). */
export function changesCount(n: number): string {
  return plural(n, "change");
}
