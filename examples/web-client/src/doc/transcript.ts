/**
 * Reading a Transcript document (schema 1) into messages and parts.
 *
 * sync-protocol/README.md §5: only the server writes transcripts; clients
 * read. Skip a message or part that is not a map or has no `id`, show the
 * first of a repeated id, keep unknown `role`, `type` and `state` values, and
 * render in list order (the server keeps both lists sorted by id).
 */
import { TRANSCRIPT_SCHEMA_VERSION } from "../schema";
import { bool, list, num, optStr, record, identified, str } from "./values";

export interface PartView {
  id: string;
  /** `text`, `reasoning`, `tool`, `step`, or a newer value. */
  type: string;
  text: string | null;
  tool: string | null;
  state: string | null;
  /** JSON text. */
  input: string | null;
  output: string | null;
  error: string | null;
  truncated: boolean;
}

export interface MessageUsageView {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface MessageView {
  id: string;
  /** `user`, `assistant`, or a newer value. */
  role: string;
  author: string | null;
  queueEntry: string | null;
  createdAt: number;
  parts: PartView[];
  finish: string | null;
  error: string | null;
  usage: MessageUsageView | null;
}

export interface TranscriptView {
  schema: number;
  /** False when the document is not a transcript this client understands. */
  valid: boolean;
  sessionId: string;
  featureId: string;
  messages: MessageView[];
}

function readPart(value: unknown): PartView | null {
  const item = identified(value);
  if (!item) return null;
  const { m, id } = item;
  return {
    id,
    type: str(m.type),
    text: optStr(m.text),
    tool: optStr(m.tool),
    state: optStr(m.state),
    input: optStr(m.input),
    output: optStr(m.output),
    error: optStr(m.error),
    truncated: bool(m.truncated),
  };
}

function readMessage(value: unknown): MessageView | null {
  const item = identified(value);
  if (!item) return null;
  const { m, id } = item;
  const parts: PartView[] = [];
  const seen = new Set<string>();
  for (const p of list(m.parts)) {
    const part = readPart(p);
    if (!part || seen.has(part.id)) continue;
    seen.add(part.id);
    parts.push(part);
  }
  const usage = record(m.usage);
  return {
    id,
    role: str(m.role),
    author: optStr(m.author),
    queueEntry: optStr(m.queue_entry),
    createdAt: num(m.created_at),
    parts,
    finish: optStr(m.finish),
    error: optStr(m.error),
    usage: usage
      ? { inputTokens: num(usage.input_tokens), outputTokens: num(usage.output_tokens), costUsd: num(usage.cost_usd) }
      : null,
  };
}

/** Read a Transcript document (or any value). Never throws. */
export function readTranscript(doc: unknown): TranscriptView {
  const root = record(doc) ?? {};
  const schema = num(root.schema, 0);
  const sessionId = str(root.session_id);
  const messages: MessageView[] = [];
  const seen = new Set<string>();
  for (const value of list(root.messages)) {
    const message = readMessage(value);
    if (!message || seen.has(message.id)) continue;
    seen.add(message.id);
    messages.push(message);
  }
  return {
    schema,
    valid: schema === TRANSCRIPT_SCHEMA_VERSION && sessionId !== "",
    sessionId,
    featureId: str(root.feature_id),
    messages,
  };
}
