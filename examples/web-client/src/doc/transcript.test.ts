import { describe, expect, it } from "vitest";
import { readTranscript } from "./transcript";
import { SES_A, s, serverTranscript } from "../test/fixtures";

describe("readTranscript", () => {
  it("reads messages and parts written as scalars and Text", () => {
    const doc = serverTranscript([
      { id: s("msg_001"), role: s("user"), author: s("usr_x"), queue_entry: s("q_aaaaaaaaaaaaaaaaaaaa"), created_at: 1, parts: [{ id: s("prt_001"), type: s("text"), text: "hi" }] },
      {
        id: s("msg_002"),
        role: s("assistant"),
        created_at: 2,
        finish: s("stop"),
        usage: { input_tokens: 10, output_tokens: 5, cost_usd: 0.25 },
        parts: [
          { id: s("prt_002"), type: s("tool"), tool: s("bash"), state: s("completed"), input: s('{"command":"ls"}'), output: s("a\nb"), truncated: true },
          { id: s("prt_003"), type: s("text"), text: "done" },
        ],
      },
    ]);
    const t = readTranscript(doc);
    expect(t.valid).toBe(true);
    expect(t.sessionId).toBe(SES_A);
    expect(t.messages.map((m) => [m.id, m.role])).toEqual([
      ["msg_001", "user"],
      ["msg_002", "assistant"],
    ]);
    expect(t.messages[0]).toMatchObject({ author: "usr_x", queueEntry: "q_aaaaaaaaaaaaaaaaaaaa" });
    expect(t.messages[1]!.usage).toEqual({ inputTokens: 10, outputTokens: 5, costUsd: 0.25 });
    expect(t.messages[1]!.parts[0]).toMatchObject({ tool: "bash", state: "completed", input: '{"command":"ls"}', output: "a\nb", truncated: true });
  });

  it("skips parts and messages without ids, keeps the first of a repeated id and unknown kinds", () => {
    const doc = serverTranscript([
      { id: s("msg_001"), role: s("assistant"), created_at: 1, parts: [{ type: s("text"), text: "no id" }, { id: s("prt_1"), type: s("hologram") }, { id: s("prt_1"), type: s("text"), text: "dup" }] },
      { role: s("user"), parts: [] },
      { id: s("msg_001"), role: s("user"), parts: [] },
    ]);
    const t = readTranscript(doc);
    expect(t.messages).toHaveLength(1);
    expect(t.messages[0]!.parts).toEqual([
      { id: "prt_1", type: "hologram", text: null, tool: null, state: null, input: null, output: null, error: null, truncated: false },
    ]);
  });

  it("says when a document is not a transcript", () => {
    expect(readTranscript({ schema: 2, session_id: "x", messages: [] }).valid).toBe(false);
    expect(readTranscript({ schema: 1, messages: [] }).valid).toBe(false);
  });
});
