/**
 * Canopy ephemeral messages: TypeScript types for JS clients.
 *
 * High-frequency state (presence, typing, sandbox heartbeats, streamed
 * agent output) never goes into a document. Send it with
 * `handle.broadcast(message)` on the Feature document's handle and receive
 * it with `handle.on("ephemeral-message", ({ message, senderId }) => …)`.
 * automerge-repo encodes the message with CBOR; it is a plain object, so
 * every string here is an ordinary `string`.
 *
 * Rules for receivers: ignore messages whose `type` you do not know, ignore
 * fields you do not know, and treat a missing optional field like `null`.
 * The normative description is `sync-protocol/README.md`; the Rust
 * reference implementation is `canopy_protocol::ephemeral`.
 */

/** Largest encoded message peers accept (and Canopy produces): 64 KiB. */
export const MAX_EPHEMERAL_BYTES = 64 * 1024;

export type EphemeralMessage = Presence | Typing | Heartbeat | AgentOutput | Refused;

/** `left`: the page closed or no longer shows the feature; show the user
 * offline now rather than when their presence expires. */
export const PRESENCE_STATUSES = ["active", "idle", "away", "left"] as const;
export type PresenceStatus = (typeof PRESENCE_STATUSES)[number];

/** Who is here and what they look at. Send on change, and again now and
 * then so that receivers can expire presence they stop hearing about. */
export interface Presence {
  type: "presence";
  user_id: string;
  name?: string;
  status: PresenceStatus;
  /** The session the user has open. */
  session_id?: string;
  cursor?: Cursor | null;
}

export interface Cursor {
  /** Repository-relative path. */
  path: string;
  /** 1-based line. */
  line: number;
}

/** Someone is typing a prompt for a session (lets the server warm a sandbox). */
export interface Typing {
  type: "typing";
  user_id: string;
  session_id: string;
}

/** Sent by the sidecar every 2 s and whenever OpenCode's state changes. */
export interface Heartbeat {
  type: "heartbeat";
  session_id: string;
  /** OpenCode as the sidecar sees it: "starting" | "up" | "down" | "failed". */
  sandbox_state: string;
  /** Unix ms. */
  at: number;
  /** Id of the running OpenCode process; changes after every restart. */
  opencode_instance?: string;
  /** How often the sidecar restarted OpenCode. */
  restarts?: number;
}

export const OUTPUT_KINDS = ["text", "reasoning", "tool"] as const;
export type OutputKind = (typeof OUTPUT_KINDS)[number];

/**
 * Streamed agent output: `text` is a delta appended to the part's earlier
 * deltas, ordered by `seq` (from 0, per part). The settled text is written
 * to the session's transcript document; drop the stream once it lands.
 */
export interface AgentOutput {
  type: "agent_output";
  session_id: string;
  message_id: string;
  part_id: string;
  kind: OutputKind;
  text: string;
  seq: number;
}

/**
 * Sent by the server to the one peer whose changes it did not accept (for
 * example a viewer's edits). The changes stay in that peer's replica and
 * reach nobody else; show the user that they were not saved.
 */
export interface Refused {
  type: "refused";
  /** `read_only`: the peer may read the document but not change it. */
  reason: string;
  message: string;
}
