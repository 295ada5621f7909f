/**
 * Canopy Transcript document, schema 1: TypeScript types for JS clients.
 *
 * One document per agent session: the conversation with the session's
 * agent, message by message and part by part. Find its URL in the Feature
 * document (`sessions[id].transcript`) and open it with
 * `repo.find<TranscriptDoc>(url)`. Only the Canopy server writes
 * transcripts: treat the document as read-only.
 *
 * While the agent streams, the server broadcasts `agent_output` ephemeral
 * messages (see `ephemeral.ts`) on the transcript document's handle:
 * append each part's deltas in `seq` order, and replace them with the
 * part's `text` once it lands in the document.
 *
 * Order: message and part ids sort in creation order (plain ASCII order of
 * the id string); the server keeps `messages` and each message's `parts`
 * sorted by id, so render them in list order.
 *
 * Strings follow the Feature document's rules (`feature.ts`): a field may
 * hold Text (`string`) or a scalar (`ImmutableString`); read with
 * `String(value)`. Skip messages and parts without an `id`, show the first
 * of a repeated id, and keep unknown `role`, `type` and `state` values.
 * The normative description is `sync-protocol/README.md`; the Rust
 * reference implementation is `canopy_protocol::transcript`.
 */
import type { ImmutableString } from "@automerge/automerge";

/** The schema this file describes; the document's `schema` key. */
export const TRANSCRIPT_SCHEMA_VERSION = 1 as const;

/** A string as loaded from the document: Text (`string`) or a scalar
 * (`ImmutableString`). Compare with `String(value)`. */
export type Str = string | ImmutableString;

/** Longest tool `output` stored, in characters (Unicode code points; JS
 * `[...s].length`). Longer outputs are cut and marked `truncated`. */
export const MAX_OUTPUT_CHARS = 4000;

export const ROLES = ["user", "assistant"] as const;
export type Role = (typeof ROLES)[number];

export const PART_KINDS = ["text", "reasoning", "tool", "step"] as const;
export type PartKind = (typeof PART_KINDS)[number];

export const TOOL_STATES = ["pending", "running", "completed", "error"] as const;
export type ToolState = (typeof TOOL_STATES)[number];

/** The whole document. */
export interface TranscriptDoc {
  /** {@link TRANSCRIPT_SCHEMA_VERSION}. Do not trust a document with a larger value. */
  schema: number;
  /** `ses_…`. */
  session_id: Str;
  /** `ftr_…`. */
  feature_id: Str;
  /** Sorted by `id`. */
  messages: Message[];
}

export interface Message {
  /** The agent's message id (`msg_…`). */
  id: Str;
  /** A {@link Role}, or a value from a newer server. */
  role: Str;
  /** User messages: the user id who queued the prompt. */
  author?: Str;
  /** User messages: the feature queue entry (`q_…`) the prompt came from. */
  queue_entry?: Str;
  /** Unix ms. */
  created_at: number;
  /** Sorted by `id`. */
  parts: Part[];
  /** Assistant messages: why the model stopped (`"tool-calls"`, `"stop"`, …). */
  finish?: Str;
  /** Assistant messages: the provider's error message. */
  error?: Str;
  /** Assistant messages: tokens and cost of this message. */
  usage?: Usage;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

export interface Part {
  /** The agent's part id (`prt_…`). */
  id: Str;
  /** A {@link PartKind}, or a value from a newer server. */
  type: Str;
  /** Text. `text` and `reasoning` parts: the settled text; `step`: an optional label. */
  text?: string;
  /** Tool parts: the tool's name (`write`, `bash`, …). */
  tool?: Str;
  /** Tool parts: a {@link ToolState}, or a value from a newer server. */
  state?: Str;
  /** Tool parts: the tool input, as JSON text (`JSON.parse(String(input))`). */
  input?: Str;
  /** Tool parts: the output, at most {@link MAX_OUTPUT_CHARS} characters. */
  output?: Str;
  /** Tool parts: why the call failed. */
  error?: Str;
  /** Tool parts: `output` was cut; absent means false. The server keeps the full output. */
  truncated?: boolean;
}
