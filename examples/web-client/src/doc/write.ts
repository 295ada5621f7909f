/**
 * Writing to a Feature document, following the schema's write rules
 * (sync-protocol/README.md §4 "Writing" and §6):
 *
 * - containers (maps, lists, Text) are edited in place, never replaced;
 * - machine values (ids, statuses, authors, paths) are written as scalar
 *   strings (`ImmutableString`, "stored as str"); prose is written as Text;
 * - clients append queue entries as `queued` and may only move their own
 *   `queued` entry to `cancelled`;
 * - ids are a prefix and 20 characters of [a-z0-9] (`newId`).
 *
 * Every function takes the mutable document inside `handle.change(d => …)`
 * (or `Automerge.change`) and throws a `WriteError` instead of writing
 * something the server would refuse.
 */
import * as A from "@automerge/automerge/slim";
import type { Prop } from "@automerge/automerge/slim";
import { ID_PREFIXES, IMPORTANCES, SCHEMA_VERSION, newId } from "../schema";
import type { Decision, FeatureDoc, KeyFile, Learning, QueueEntry } from "../schema";
import { str } from "./values";
import { textEdit } from "./text";

export class WriteError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "WriteError";
  }
}

/** Prompt size the server accepts by default (README §3 "Agents"). */
export const MAX_PROMPT_BYTES = 64 * 1024;

const scalar = (s: string) => new A.ImmutableString(s);
const utf8Length = (s: string) => new TextEncoder().encode(s).length;

function checkSchema(d: FeatureDoc) {
  const schema = typeof d.schema === "number" ? d.schema : 0;
  if (schema > SCHEMA_VERSION) {
    throw new WriteError("unsupported_schema", `this document has schema ${schema}; this client writes schema ${SCHEMA_VERSION}`);
  }
}

function requireList<T>(d: FeatureDoc, key: "queue" | "learnings" | "decisions"): T[] {
  const value = (d as unknown as Record<string, unknown>)[key];
  // Only the server creates root containers (README §6.1, §8).
  if (!Array.isArray(value)) throw new WriteError("missing_container", `the document has no ${key} list`);
  return value as T[];
}

/**
 * Set a prose field to `value`, editing its Text in place when it is Text
 * (so concurrent edits to other parts of it survive). A scalar or missing
 * value is replaced with new Text.
 */
export function setText(d: unknown, path: Prop[], value: string): void {
  let parent: unknown = d;
  for (const p of path.slice(0, -1)) parent = (parent as Record<Prop, unknown>)[p];
  const key = path[path.length - 1]!;
  const current = (parent as Record<Prop, unknown>)[key];
  if (typeof current === "string") {
    const edit = textEdit(current, value);
    // Splice relative to the parent object: Automerge joins string paths
    // with "/", and map keys such as key_files paths contain slashes.
    if (edit) A.splice(parent as A.Doc<unknown>, [key], edit.index, edit.del, edit.insert);
  } else {
    (parent as Record<Prop, unknown>)[key] = value;
  }
}

// ---------------------------------------------------------------- queue

export interface NewPrompt {
  sessionId: string;
  /** The signed-in user's id (`GET /api/me`); the server rejects any other. */
  author: string;
  text: string;
  now: number;
  /** Defaults to a fresh `q_…` id. */
  id?: string;
}

/** Append a `queued` entry to the queue. Returns its id. */
export function appendQueueEntry(d: FeatureDoc, prompt: NewPrompt): string {
  checkSchema(d);
  const queue = requireList<QueueEntry>(d, "queue");
  if (!prompt.text.trim()) throw new WriteError("empty", "the prompt is empty");
  if (utf8Length(prompt.text) > MAX_PROMPT_BYTES) {
    throw new WriteError("too_large", `prompts are limited to ${MAX_PROMPT_BYTES / 1024} KiB`);
  }
  if (!prompt.author) throw new WriteError("no_author", "sign in first: a prompt needs its author");
  const sessions = (d.sessions ?? {}) as Record<string, unknown>;
  if (!Object.prototype.hasOwnProperty.call(sessions, prompt.sessionId)) {
    throw new WriteError("unknown_session", `no session ${prompt.sessionId} in this feature`);
  }
  const id = prompt.id ?? newId(ID_PREFIXES.queueEntry);
  queue.push({
    id: scalar(id),
    session_id: scalar(prompt.sessionId),
    author: scalar(prompt.author),
    text: prompt.text,
    created_at: Math.trunc(prompt.now),
    status: scalar("queued"),
  });
  return id;
}

export type CancelResult = "cancelled" | "not_found" | "not_author" | "not_queued";

/**
 * Withdraw the user's own `queued` entry: `queued → cancelled` and
 * `finished_at` (README §6.2). Anything else is left alone: a running entry
 * is stopped through `POST …/stop`, and only the server moves other statuses.
 */
export function cancelQueueEntry(d: FeatureDoc, entryId: string, userId: string, now: number): CancelResult {
  checkSchema(d);
  const queue = requireList<QueueEntry>(d, "queue");
  const entry = queue.find((e) => e && str(e.id) === entryId);
  if (!entry) return "not_found";
  if (str(entry.author) !== userId) return "not_author";
  if (str(entry.status) !== "queued") return "not_queued";
  entry.status = scalar("cancelled");
  entry.finished_at = Math.trunc(now);
  return "cancelled";
}

// ---------------------------------------------------------------- learnings

export interface NewLearning {
  text: string;
  author: string;
  now: number;
  importance?: string;
  files?: string[];
  fromSession?: string;
  id?: string;
}

function checkImportance(importance: string) {
  if (!(IMPORTANCES as readonly string[]).includes(importance)) {
    throw new WriteError("invalid", `importance must be one of ${IMPORTANCES.join(", ")}`);
  }
}

export function addLearning(d: FeatureDoc, input: NewLearning): string {
  checkSchema(d);
  const learnings = requireList<Learning>(d, "learnings");
  if (!input.text.trim()) throw new WriteError("empty", "the learning is empty");
  const importance = input.importance ?? "medium";
  checkImportance(importance);
  const files = (input.files ?? []).map(checkPath);
  const id = input.id ?? newId(ID_PREFIXES.learning);
  const learning: Learning = {
    id: scalar(id),
    text: input.text,
    author: scalar(input.author),
    importance: scalar(importance),
    files: files.map(scalar),
    created_at: Math.trunc(input.now),
  };
  if (input.fromSession) learning.from_session = scalar(input.fromSession);
  learnings.push(learning);
  return id;
}

export interface LearningPatch {
  text?: string;
  importance?: string;
  files?: string[];
}

/** Edit a learning in place. Returns false when it no longer exists. */
export function editLearning(d: FeatureDoc, id: string, patch: LearningPatch): boolean {
  checkSchema(d);
  const learnings = requireList<Learning>(d, "learnings");
  const index = learnings.findIndex((l) => l && str(l.id) === id);
  if (index < 0) return false;
  const learning = learnings[index]!;
  if (patch.text !== undefined) {
    if (!patch.text.trim()) throw new WriteError("empty", "the learning is empty");
    setText(d, ["learnings", index, "text"], patch.text);
  }
  if (patch.importance !== undefined && patch.importance !== str(learning.importance)) {
    checkImportance(patch.importance);
    learning.importance = scalar(patch.importance);
  }
  if (patch.files !== undefined) {
    const files = patch.files.map(checkPath);
    if (!Array.isArray(learning.files)) learning.files = [];
    syncStringList(learning.files, files);
  }
  return true;
}

export function deleteLearning(d: FeatureDoc, id: string): boolean {
  checkSchema(d);
  const learnings = requireList<Learning>(d, "learnings");
  const index = learnings.findIndex((l) => l && str(l.id) === id);
  if (index < 0) return false;
  learnings.splice(index, 1);
  return true;
}

// ---------------------------------------------------------------- decisions

export interface NewDecision {
  decision: string;
  rationale: string;
  alternatives?: string[];
  author: string;
  now: number;
  fromSession?: string;
  id?: string;
}

export function addDecision(d: FeatureDoc, input: NewDecision): string {
  checkSchema(d);
  const decisions = requireList<Decision>(d, "decisions");
  if (!input.decision.trim()) throw new WriteError("empty", "the decision is empty");
  const id = input.id ?? newId(ID_PREFIXES.decision);
  const decision: Decision = {
    id: scalar(id),
    decision: input.decision,
    rationale: input.rationale,
    alternatives: (input.alternatives ?? []).filter((a) => a.trim() !== ""),
    author: scalar(input.author),
    created_at: Math.trunc(input.now),
  };
  if (input.fromSession) decision.from_session = scalar(input.fromSession);
  decisions.push(decision);
  return id;
}

export interface DecisionPatch {
  decision?: string;
  rationale?: string;
  alternatives?: string[];
}

/** Edit a decision in place. Returns false when it no longer exists. */
export function editDecision(d: FeatureDoc, id: string, patch: DecisionPatch): boolean {
  checkSchema(d);
  const decisions = requireList<Decision>(d, "decisions");
  const index = decisions.findIndex((x) => x && str(x.id) === id);
  if (index < 0) return false;
  const decision = decisions[index]!;
  if (patch.decision !== undefined) {
    if (!patch.decision.trim()) throw new WriteError("empty", "the decision is empty");
    setText(d, ["decisions", index, "decision"], patch.decision);
  }
  if (patch.rationale !== undefined) setText(d, ["decisions", index, "rationale"], patch.rationale);
  if (patch.alternatives !== undefined) {
    const wanted = patch.alternatives.filter((a) => a.trim() !== "");
    if (!Array.isArray(decision.alternatives)) decision.alternatives = [];
    const alts = decision.alternatives;
    // Edit each alternative's Text in place, then add or remove at the end.
    for (let i = 0; i < Math.min(alts.length, wanted.length); i++) {
      setText(d, ["decisions", index, "alternatives", i], wanted[i]!);
    }
    if (alts.length > wanted.length) alts.splice(wanted.length, alts.length - wanted.length);
    for (let i = alts.length; i < wanted.length; i++) alts.push(wanted[i]!);
  }
  return true;
}

export function deleteDecision(d: FeatureDoc, id: string): boolean {
  checkSchema(d);
  const decisions = requireList<Decision>(d, "decisions");
  const index = decisions.findIndex((x) => x && str(x.id) === id);
  if (index < 0) return false;
  decisions.splice(index, 1);
  return true;
}

// ---------------------------------------------------------------- key files

/** A repository-relative path: 1 to 4096 bytes, no control characters. */
export function checkPath(path: string): string {
  const p = path.trim();
  // eslint-disable-next-line no-control-regex
  if (!p || utf8Length(p) > 4096 || /[\u0000-\u001f\u007f]/.test(p)) {
    throw new WriteError("invalid_path", `not a repository path: ${JSON.stringify(path)}`);
  }
  if (p.startsWith("/")) throw new WriteError("invalid_path", "paths are relative to the repository root");
  return p;
}

/** Mark a key file (or update its note). `sessionId` is added to its
 * `sessions` once. */
export function markKeyFile(d: FeatureDoc, path: string, note: string, sessionId?: string): string {
  checkSchema(d);
  const p = checkPath(path);
  const keyFiles = d.key_files as Record<string, KeyFile> | undefined;
  if (!keyFiles || typeof keyFiles !== "object") {
    throw new WriteError("missing_container", "the document has no key_files map");
  }
  const existing = keyFiles[p];
  if (existing && typeof existing === "object") {
    setText(d, ["key_files", p, "note"], note);
    if (sessionId) {
      if (!Array.isArray(existing.sessions)) existing.sessions = [];
      if (!existing.sessions.some((s) => str(s) === sessionId)) existing.sessions.push(scalar(sessionId));
    }
  } else {
    keyFiles[p] = { note, sessions: sessionId ? [scalar(sessionId)] : [] };
  }
  return p;
}

export function unmarkKeyFile(d: FeatureDoc, path: string): boolean {
  checkSchema(d);
  const keyFiles = d.key_files as Record<string, KeyFile> | undefined;
  if (!keyFiles || !(path in keyFiles)) return false;
  delete keyFiles[path];
  return true;
}

// ---------------------------------------------------------------- notes

/**
 * Apply a textarea edit to the shared notes as one splice, so that two
 * people typing at once both keep their words. `before` is the text the
 * edit was made on (what the textarea showed), `after` what it shows now.
 * Returns false when there was nothing to do.
 */
export function spliceNotes(d: FeatureDoc, before: string, after: string, caretAfter?: number): boolean {
  checkSchema(d);
  if (typeof d.notes !== "string") throw new WriteError("missing_container", "the document has no notes text");
  const edit = textEdit(before, after, caretAfter);
  if (!edit) return false;
  // The document may have moved on since `before` (a remote edit that the
  // textarea has not shown yet); never splice past its end.
  const length = d.notes.length;
  const index = Math.min(edit.index, length);
  const del = Math.min(edit.del, length - index);
  A.splice(d, ["notes"], index, del, edit.insert);
  return true;
}

// ---------------------------------------------------------------- helpers

/** Make a list of scalar strings equal `wanted`, in place. */
function syncStringList(target: unknown[], wanted: string[]) {
  for (let i = target.length - 1; i >= 0; i--) {
    if (!wanted.includes(str(target[i]))) target.splice(i, 1);
  }
  const have = new Set(target.map((v) => str(v)));
  for (const w of wanted) {
    if (!have.has(w)) {
      target.push(scalar(w));
      have.add(w);
    }
  }
}
