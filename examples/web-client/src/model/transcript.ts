/**
 * The live transcript: the settled messages of the Transcript document,
 * with the agent's streamed `agent_output` deltas merged in (README §5
 * "Streaming").
 *
 * Deltas are keyed by part id and ordered by `seq` (from 0, per part). A
 * part shows its deltas until its settled text lands in the document; then
 * it shows the document's text and the deltas are dropped. Parts and
 * messages the document does not have yet are shown at their sorted place
 * (ids sort in creation order).
 */
import type { AgentOutput } from "../schema";
import type { MessageView, PartView, TranscriptView } from "../doc/transcript";

export interface StreamedPart {
  messageId: string;
  partId: string;
  kind: string;
  /** Deltas by `seq`. */
  deltas: Readonly<Record<number, string>>;
  updatedAt: number;
}

export type StreamState = Readonly<Record<string, StreamedPart>>;

export const EMPTY_STREAM: StreamState = Object.freeze({});

/** Most deltas kept per part; more than that and the part is a document's job. */
const MAX_DELTAS = 20_000;

export function applyAgentOutput(state: StreamState, message: AgentOutput, now: number): StreamState {
  const prev = state[message.part_id];
  if (prev && prev.deltas[message.seq] !== undefined) return state; // duplicate
  if (prev && Object.keys(prev.deltas).length >= MAX_DELTAS) return state;
  return {
    ...state,
    [message.part_id]: {
      messageId: message.message_id,
      partId: message.part_id,
      kind: message.kind,
      deltas: { ...(prev?.deltas ?? {}), [message.seq]: message.text },
      updatedAt: now,
    },
  };
}

/**
 * The streamed text of a part: its deltas in `seq` order, up to the first
 * gap. `partial` says that the text is not known from its start (we joined
 * mid-stream, or lost a delta).
 */
export function streamedText(part: StreamedPart): { text: string; partial: boolean } {
  const seqs = Object.keys(part.deltas)
    .map(Number)
    .sort((a, b) => a - b);
  if (seqs.length === 0) return { text: "", partial: false };
  let text = "";
  let expected = seqs[0]!;
  const partial = expected !== 0;
  for (const seq of seqs) {
    if (seq !== expected) break;
    text += part.deltas[seq];
    expected++;
  }
  return { text, partial };
}

export interface RenderPart extends PartView {
  /** Text is (still) coming from the stream, not the document. */
  streaming: boolean;
  /** Streamed text that does not start at the beginning. */
  partial: boolean;
}

export interface RenderMessage extends Omit<MessageView, "parts"> {
  parts: RenderPart[];
  /** Only known from the stream so far. */
  streaming: boolean;
}

/**
 * Which text to show for a part that has both a document text and deltas:
 * the document's once it has caught up with the stream, so that text never
 * shrinks while it settles.
 */
function mergeText(docText: string | null, stream: { text: string; partial: boolean } | null): { text: string | null; streaming: boolean; partial: boolean } {
  if (!stream || stream.text === "") return { text: docText, streaming: false, partial: false };
  const settled = docText ?? "";
  if (settled === "") return { text: stream.text, streaming: true, partial: stream.partial };
  if (!stream.partial && stream.text.length > settled.length && stream.text.startsWith(settled)) {
    return { text: stream.text, streaming: true, partial: false };
  }
  return { text: settled, streaming: false, partial: false };
}

function streamPart(s: StreamedPart): RenderPart {
  const { text, partial } = streamedText(s);
  const type = s.kind === "tool" ? "tool" : s.kind;
  return {
    id: s.partId,
    type,
    text: type === "tool" ? null : text,
    tool: null,
    state: type === "tool" ? "running" : null,
    input: null,
    output: type === "tool" ? text : null,
    error: null,
    truncated: false,
    streaming: true,
    partial,
  };
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export function transcriptModel(transcript: TranscriptView | null, stream: StreamState): RenderMessage[] {
  const streamByMessage = new Map<string, StreamedPart[]>();
  for (const s of Object.values(stream)) {
    const list = streamByMessage.get(s.messageId) ?? [];
    list.push(s);
    streamByMessage.set(s.messageId, list);
  }
  const out: RenderMessage[] = [];
  for (const message of transcript?.messages ?? []) {
    const streamed = streamByMessage.get(message.id) ?? [];
    streamByMessage.delete(message.id);
    const streamedById = new Map(streamed.map((s) => [s.partId, s]));
    const parts: RenderPart[] = message.parts.map((part) => {
      const s = streamedById.get(part.id);
      streamedById.delete(part.id);
      if (!s) return { ...part, streaming: false, partial: false };
      const st = streamedText(s);
      if (part.type === "tool") {
        const merged = mergeText(part.output, st);
        return { ...part, output: merged.text, streaming: merged.streaming, partial: merged.partial };
      }
      const merged = mergeText(part.text, st);
      return { ...part, text: merged.text, streaming: merged.streaming, partial: merged.partial };
    });
    // Parts the document does not have yet, in id order after the settled ones.
    const extra = [...streamedById.values()].map(streamPart);
    const allParts = extra.length ? [...parts, ...extra].sort(byId) : parts;
    out.push({ ...message, parts: allParts, streaming: allParts.some((p) => p.streaming) });
  }
  for (const [messageId, streamed] of streamByMessage) {
    out.push({
      id: messageId,
      role: "assistant",
      author: null,
      queueEntry: null,
      createdAt: Math.min(...streamed.map((s) => s.updatedAt)),
      parts: streamed.map(streamPart).sort(byId),
      finish: null,
      error: null,
      usage: null,
      streaming: true,
    });
  }
  // Document messages are sorted already; stream-only ones go to their place.
  return out.sort(byId);
}

/**
 * Drop the deltas of parts whose settled text has landed (the document's
 * text is at least as long as the stream), and of parts not heard of for
 * `staleAfterMs` (a stream that stopped without settling).
 */
export function pruneStream(state: StreamState, transcript: TranscriptView | null, now: number, staleAfterMs = 10 * 60_000): StreamState {
  const settled = new Map<string, PartView>();
  for (const m of transcript?.messages ?? []) for (const p of m.parts) settled.set(p.id, p);
  let changed = false;
  const next: Record<string, StreamedPart> = {};
  for (const [id, s] of Object.entries(state)) {
    const part = settled.get(id);
    const docText = part ? (part.type === "tool" ? part.output : part.text) : null;
    const { text, partial } = streamedText(s);
    const landed = docText !== null && docText !== "" && (partial || docText.length >= text.length);
    if (landed || now - s.updatedAt > staleAfterMs) {
      changed = true;
      continue;
    }
    next[id] = s;
  }
  return changed ? next : state;
}

/** Whether the agent is producing output right now. */
export function isStreaming(messages: readonly RenderMessage[]): boolean {
  return messages.some((m) => m.streaming);
}

/**
 * What a `step` part (a boundary between the agent's steps, text `step
 * finished: <reason>`) should say, or `null` when it says nothing worth a
 * line: a step that ended normally (`stop`, `tool-calls`) is not news; a
 * step cut short (length limit, content filter, error) is.
 */
export function stepLabel(text: string | null | undefined): string | null {
  const raw = (text ?? "").trim();
  if (!raw) return null;
  const reason = /^step finished:\s*(.*)$/i.exec(raw)?.[1]?.trim().toLowerCase();
  if (reason === undefined) return raw;
  switch (reason) {
    case "":
    case "stop":
    case "tool-calls":
    case "tool_calls":
    case "unknown":
    case "other":
      return null;
    case "length":
      return "The answer stopped at the model's length limit.";
    case "content-filter":
    case "content_filter":
      return "The provider's content filter stopped the answer.";
    case "error":
      return "This step ended with an error.";
    default:
      return raw;
  }
}
