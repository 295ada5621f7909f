/**
 * Ephemeral messages (sync-protocol/README.md §7): presence, typing,
 * heartbeats, streamed agent output and refusals.
 *
 * On the wire each is one CBOR map with a `type` key and snake_case fields:
 * exactly what automerge-repo's codec (cbor-x) makes of a plain object, so
 * "encoding" here means building that plain object (without `undefined`
 * fields) and checking its encoded size; `handle.broadcast(obj)` does the
 * CBOR. Received messages arrive already CBOR-decoded (`ephemeral-message`
 * event); `decodeEphemeral` validates and normalises them: unknown types and
 * malformed messages give `null` (ignore them), unknown fields are dropped,
 * and integers may arrive as floats or BigInts (cbor-x decodes a 64-bit
 * integer as a BigInt).
 */
import { cbor } from "@automerge/automerge-repo/slim";
import { MAX_EPHEMERAL_BYTES } from "../schema";
import type { AgentOutput, Cursor, EphemeralMessage, Heartbeat, Presence, PresenceStatus, Refused, Typing } from "../schema";

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

const optionalString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** An integer field: a number (integral float too) or a BigInt, up to 2^53. */
function integer(v: unknown): number | undefined {
  if (typeof v === "bigint") {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    return Number(v);
  }
  if (typeof v === "number" && Number.isInteger(v)) return v;
  return undefined;
}

/** Drop `undefined` fields: cbor-x would encode them as CBOR `undefined`. */
function compact<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as T;
}

// ---------------------------------------------------------------- builders

export function presenceMessage(p: {
  userId: string;
  name?: string;
  status: PresenceStatus;
  sessionId?: string | null;
  cursor?: Cursor | null;
}): Presence {
  return compact<Presence>({
    type: "presence",
    user_id: p.userId,
    name: p.name || undefined,
    status: p.status,
    session_id: p.sessionId || undefined,
    cursor: p.cursor ?? undefined,
  });
}

export function typingMessage(userId: string, sessionId: string): Typing {
  return { type: "typing", user_id: userId, session_id: sessionId };
}

export function agentOutputMessage(a: Omit<AgentOutput, "type">): AgentOutput {
  return { type: "agent_output", ...a };
}

/** The CBOR bytes automerge-repo sends for `message`. */
export function encodeEphemeral(message: EphemeralMessage): Uint8Array {
  return new Uint8Array(cbor.encode(message));
}

/** Whether `message` fits the 64 KiB limit (larger ones close the
 * connection: README §3 "Refusals"). */
export function fitsEphemeralLimit(message: EphemeralMessage): boolean {
  return encodeEphemeral(message).byteLength <= MAX_EPHEMERAL_BYTES;
}

// ---------------------------------------------------------------- decoding

/** Validate a received (already CBOR-decoded) message. Bytes are decoded too. */
export function decodeEphemeral(raw: unknown): EphemeralMessage | null {
  let value = raw;
  if (value instanceof Uint8Array) {
    try {
      value = cbor.decode(value);
    } catch {
      return null;
    }
  }
  if (!isMap(value)) return null;
  switch (value.type) {
    case "presence":
      return decodePresence(value);
    case "typing":
      return decodeTyping(value);
    case "heartbeat":
      return decodeHeartbeat(value);
    case "agent_output":
      return decodeAgentOutput(value);
    case "refused":
      return decodeRefused(value);
    default:
      return null;
  }
}

function decodePresence(v: Record<string, unknown>): Presence | null {
  if (typeof v.user_id !== "string" || !v.user_id || typeof v.status !== "string") return null;
  let cursor: Cursor | null | undefined;
  if (isMap(v.cursor) && typeof v.cursor.path === "string") {
    const line = integer(v.cursor.line);
    cursor = line === undefined ? undefined : { path: v.cursor.path, line };
  }
  return compact<Presence>({
    type: "presence",
    user_id: v.user_id,
    name: optionalString(v.name),
    // Unknown statuses are kept (README §7 "Forward compatibility").
    status: v.status as PresenceStatus,
    session_id: optionalString(v.session_id),
    cursor,
  });
}

function decodeTyping(v: Record<string, unknown>): Typing | null {
  if (typeof v.user_id !== "string" || typeof v.session_id !== "string" || !v.user_id) return null;
  return { type: "typing", user_id: v.user_id, session_id: v.session_id };
}

function decodeHeartbeat(v: Record<string, unknown>): Heartbeat | null {
  const at = integer(v.at);
  if (typeof v.session_id !== "string" || typeof v.sandbox_state !== "string" || at === undefined) return null;
  return compact<Heartbeat>({
    type: "heartbeat",
    session_id: v.session_id,
    sandbox_state: v.sandbox_state,
    at,
    opencode_instance: optionalString(v.opencode_instance),
    restarts: integer(v.restarts),
  });
}

function decodeAgentOutput(v: Record<string, unknown>): AgentOutput | null {
  const seq = integer(v.seq);
  if (
    typeof v.session_id !== "string" ||
    typeof v.message_id !== "string" ||
    typeof v.part_id !== "string" ||
    typeof v.text !== "string" ||
    seq === undefined ||
    seq < 0 ||
    !v.part_id
  ) {
    return null;
  }
  return {
    type: "agent_output",
    session_id: v.session_id,
    message_id: v.message_id,
    part_id: v.part_id,
    kind: (typeof v.kind === "string" ? v.kind : "text") as AgentOutput["kind"],
    text: v.text,
    seq,
  };
}

function decodeRefused(v: Record<string, unknown>): Refused | null {
  if (typeof v.reason !== "string") return null;
  return { type: "refused", reason: v.reason, message: typeof v.message === "string" ? v.message : "" };
}
