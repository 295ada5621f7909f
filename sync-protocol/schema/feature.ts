/**
 * Canopy Feature document, schema 1: TypeScript types for JS clients.
 *
 * The normative description is `sync-protocol/README.md`; the Rust reference
 * implementation is the `canopy-protocol` crate (`feature` module). One
 * Feature is one Automerge document, found with
 * `repo.find<FeatureDoc>(docUrl)` from `@automerge/automerge-repo`.
 *
 * Strings: JS Automerge 3 stores a plain JS string as collaborative Text
 * and loads Text back as a `string`; a scalar string (what Canopy's server
 * writes for ids, statuses, authors, paths and URLs) loads as an
 * `ImmutableString`. A field may hold either, depending on who wrote it, so
 * every string field below is typed `Str` and should be read with
 * `String(value)`. Prose fields (typed `string`) are always Text.
 *
 * Numbers: times are Unix milliseconds (`Date.now()`); counts are integers.
 */
import type { ImmutableString } from "@automerge/automerge";

/** The schema this file describes; the document's `schema` key. */
export const SCHEMA_VERSION = 1 as const;

/** A string as loaded from the document: Text (`string`) or a scalar
 * (`ImmutableString`). Compare with `String(value)`. */
export type Str = string | ImmutableString;

/**
 * Status values this schema knows. Newer servers may add values: keep and
 * display unknown ones, never overwrite them with a guess.
 */
export const FEATURE_STATUSES = ["active", "completed", "archived"] as const;
export type FeatureStatus = (typeof FEATURE_STATUSES)[number];

export const SESSION_STATUSES = [
  "pending",
  "starting",
  "ready",
  "running",
  "idle",
  "completed",
  "failed",
  "stopped",
] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

/**
 * Queue entry lifecycle. Clients append `queued` entries and may set
 * `cancelled` on a `queued` entry; every other transition is the server's:
 * queued → dispatched → running → done | failed; queued → rejected;
 * queued | dispatched | running → cancelled; dispatched → failed.
 */
export const QUEUE_STATUSES = [
  "queued",
  "dispatched",
  "running",
  "done",
  "failed",
  "cancelled",
  "rejected",
] as const;
export type QueueStatus = (typeof QUEUE_STATUSES)[number];
/** Statuses after which an entry never changes again. */
export const TERMINAL_QUEUE_STATUSES: readonly QueueStatus[] = ["done", "failed", "cancelled", "rejected"];

export const IMPORTANCES = ["low", "medium", "high"] as const;
export type Importance = (typeof IMPORTANCES)[number];

/** Id prefixes; an id is a prefix and 20 characters of [a-z0-9]. */
export const ID_PREFIXES = {
  feature: "ftr_",
  session: "ses_",
  queueEntry: "q_",
  learning: "lrn_",
  decision: "dec_",
} as const;
export const ID_RANDOM_LENGTH = 20;

/** Whether `id` is a well-formed id with `prefix` (the server refuses others). */
export function isValidId(prefix: string, id: string): boolean {
  return id.startsWith(prefix) && /^[a-z0-9]{20}$/.test(id.slice(prefix.length));
}

/** A new random id: `prefix` and 20 base32 characters (100 random bits). */
export function newId(prefix: string): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  const bytes = crypto.getRandomValues(new Uint8Array(ID_RANDOM_LENGTH));
  return prefix + Array.from(bytes, (b) => alphabet[b & 31]).join("");
}

/** The whole document. Every key is present in documents Canopy creates. */
export interface FeatureDoc {
  /** {@link SCHEMA_VERSION}. Refuse to edit a document with a larger value. */
  schema: number;
  /** `ftr_…`. */
  feature_id: Str;
  /** Text. */
  title: string;
  /** Text. */
  description: string;
  /** A {@link FeatureStatus}, or a value from a newer schema. */
  status: Str;
  repo: RepoRef | null;
  /** User id of the creator. */
  created_by: Str;
  /** Unix ms. */
  created_at: number;
  /** Display mirror of the access list, by user id. The server writes it. */
  participants: { [userId: string]: Participant };
  /** By session id. The server creates sessions (POST /api/features/{id}/sessions). */
  sessions: { [sessionId: string]: Session };
  /** Prompts, FIFO in the list's merged order. Clients push; see {@link NewQueueEntry}. */
  queue: QueueEntry[];
  learnings: Learning[];
  decisions: Decision[];
  /** By repository-relative path. */
  key_files: { [path: string]: KeyFile };
  /** Text. Edit with `A.splice` / `A.updateText`, never by assignment. */
  notes: string;
}

export interface RepoRef {
  url: Str;
  base_branch: Str;
  feature_branch: Str | null;
  /** Sandboxes clone the whole history rather than a shallow clone
   * (server API 11). Absent means `false`. */
  full_clone?: boolean;
}

export interface Participant {
  name: Str;
  /** `owner`, `contributor`, `viewer` or `agent`. */
  role: Str;
}

export interface Session {
  /** Text. */
  title: string;
  /** Text. */
  scope: string;
  /** A {@link SessionStatus}; written by the server and the sandbox's sidecar. */
  status: Str;
  /** Session ids that must be `completed` before this session runs anything. */
  depends_on: Str[];
  /** User id, or `agent:<session_id>` for a session an agent requested. */
  created_by: Str;
  created_at: number;
  sandbox: Sandbox | null;
  /** `automerge:` URL of the session's transcript document. */
  transcript: Str | null;
  files_changed: Str[];
  pr: PullRequest | null;
  usage: Usage;
}

export interface Sandbox {
  /** `docker`, `local`, … */
  backend: Str;
  /**
   * For display: `queued`, `starting`, `running`, `failed`, `hibernated`,
   * `stopped` (README §3 "Sandbox states"); readers accept others.
   */
  state: Str;
  workspace_ready: boolean;
  branch: Str | null;
  head: Str | null;
  /** Why the state is what it is, for people (server API 5; may be absent). */
  detail?: Str | null;
}

export interface PullRequest {
  url: Str;
  number: number;
  /** `open`, `closed`, `merged`. */
  state: Str;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

export interface QueueEntry {
  /** `q_…`. */
  id: Str;
  session_id: Str;
  /** Must be the user id of the peer that wrote the entry; the server rejects others. */
  author: Str;
  /** Text: the prompt. */
  text: string;
  created_at: number;
  /** A {@link QueueStatus}. */
  status: Str;
  /** Set by the server when the entry starts running. */
  started_at?: number;
  /** Set when the entry reaches a terminal status. */
  finished_at?: number;
  /** Why it failed, was rejected or was cancelled. */
  error?: Str;
  /**
   * The workspace commit of this prompt's work (written by the sandbox's
   * sidecar; authored by `author`, trailer `Canopy-Queue-Entry: <id>`).
   */
  commit?: Str;
}

/** What a client pushes onto `queue` (plain strings are fine). */
export interface NewQueueEntry {
  id: string;
  session_id: string;
  author: string;
  text: string;
  created_at: number;
  status: "queued";
}

export interface Learning {
  /** `lrn_…`. */
  id: Str;
  /** Text. */
  text: string;
  author: Str;
  /** Session id it came from. */
  from_session?: Str;
  /** An {@link Importance}. */
  importance: Str;
  files: Str[];
  created_at: number;
}

export interface Decision {
  /** `dec_…`. */
  id: Str;
  /** Text. */
  decision: string;
  /** Text. */
  rationale: string;
  /** Text each. */
  alternatives: string[];
  author: Str;
  from_session?: Str;
  created_at: number;
}

export interface KeyFile {
  /** Text. */
  note: string;
  /** Session ids that marked the file. */
  sessions: Str[];
}
