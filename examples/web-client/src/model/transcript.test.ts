import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { AgentOutput, TranscriptDoc } from "../schema";
import { readTranscript } from "../doc/transcript";
import { EMPTY_STREAM, applyAgentOutput, pruneStream, stepLabel, streamedText, transcriptModel } from "./transcript";
import type { StreamState } from "./transcript";
import { s, serverTranscript } from "../test/fixtures";

const delta = (part: string, seq: number, text: string, message = "msg_002", kind: AgentOutput["kind"] = "text"): AgentOutput => ({
  type: "agent_output",
  session_id: "ses_a",
  message_id: message,
  part_id: part,
  kind,
  text,
  seq,
});

function stream(...deltas: AgentOutput[]): StreamState {
  return deltas.reduce((st, d, i) => applyAgentOutput(st, d, 1000 + i), EMPTY_STREAM);
}

const userMessage = { id: s("msg_001"), role: s("user"), created_at: 1, parts: [{ id: s("prt_001"), type: s("text"), text: "hi" }] };

describe("streamed agent output", () => {
  it("joins deltas in seq order whatever order they arrive in, ignoring duplicates", () => {
    const st = stream(delta("prt_9", 1, "llo"), delta("prt_9", 0, "He"), delta("prt_9", 2, " world"), delta("prt_9", 1, "XXX"));
    expect(streamedText(st.prt_9!)).toEqual({ text: "Hello world", partial: false });
  });

  it("stops at a gap and flags text that does not start at seq 0", () => {
    expect(streamedText(stream(delta("p", 0, "a"), delta("p", 2, "c")).p!)).toEqual({ text: "a", partial: false });
    expect(streamedText(stream(delta("p", 5, "late "), delta("p", 6, "joiner")).p!)).toEqual({ text: "late joiner", partial: true });
  });

  it("shows a message known only from the stream after the settled ones", () => {
    const t = readTranscript(serverTranscript([userMessage]));
    const view = transcriptModel(t, stream(delta("prt_010", 0, "Thinking", "msg_002", "reasoning"), delta("prt_011", 0, "Answer")));
    expect(view.map((m) => [m.id, m.streaming])).toEqual([
      ["msg_001", false],
      ["msg_002", true],
    ]);
    expect(view[1]!.parts.map((p) => [p.id, p.type, p.text])).toEqual([
      ["prt_010", "reasoning", "Thinking"],
      ["prt_011", "text", "Answer"],
    ]);
  });

  it("replaces the stream with the settled text once it lands, without ever shrinking", () => {
    const st = stream(delta("prt_011", 0, "Hello "), delta("prt_011", 1, "world"));
    // The server wrote the part with part of the text so far: keep the longer stream.
    let doc = serverTranscript([
      userMessage,
      { id: s("msg_002"), role: s("assistant"), created_at: 2, parts: [{ id: s("prt_011"), type: s("text"), text: "Hello" }] },
    ]);
    let view = transcriptModel(readTranscript(doc), st);
    expect(view[1]!.parts[0]).toMatchObject({ text: "Hello world", streaming: true });
    expect(pruneStream(st, readTranscript(doc), 2000)).toBe(st);
    // The settled text lands.
    doc = A.change(doc, (d: TranscriptDoc) => {
      A.updateText(d, ["messages", 1, "parts", 0, "text"], "Hello world!");
    });
    view = transcriptModel(readTranscript(doc), st);
    expect(view[1]!.parts[0]).toMatchObject({ text: "Hello world!", streaming: false });
    expect(view[1]!.streaming).toBe(false);
    expect(pruneStream(st, readTranscript(doc), 2000)).toEqual({});
  });

  it("drops streams that went quiet without settling", () => {
    const st = stream(delta("prt_x", 0, "abandoned"));
    expect(pruneStream(st, null, 1000 + 60_000)).toBe(st);
    expect(pruneStream(st, null, 1000 + 11 * 60_000)).toEqual({});
  });
});

describe("step boundaries", () => {
  it("say nothing for steps that ended normally, and why a step was cut short", () => {
    expect(stepLabel("step finished: stop")).toBeNull();
    expect(stepLabel("step finished: tool-calls")).toBeNull();
    expect(stepLabel(undefined)).toBeNull();
    expect(stepLabel("step finished: length")).toMatch(/length limit/);
    expect(stepLabel("step finished: content-filter")).toMatch(/content filter/);
    expect(stepLabel("step finished: something-new")).toBe("step finished: something-new");
    expect(stepLabel("a note")).toBe("a note");
  });
});
