import { describe, expect, it } from "vitest";
import { cbor } from "@automerge/automerge-repo/slim";
import { MAX_EPHEMERAL_BYTES } from "../schema";
import { agentOutputMessage, decodeEphemeral, encodeEphemeral, fitsEphemeralLimit, presenceMessage, typingMessage } from "./ephemeral";

describe("ephemeral messages", () => {
  it("builds presence without undefined fields (a CBOR map of exactly the set keys)", () => {
    const p = presenceMessage({ userId: "usr_a", name: "Ana", status: "active" });
    expect(p).toEqual({ type: "presence", user_id: "usr_a", name: "Ana", status: "active" });
    expect(Object.keys(cbor.decode(encodeEphemeral(p)) as object).sort()).toEqual(["name", "status", "type", "user_id"]);
    const withSession = presenceMessage({ userId: "usr_a", status: "idle", sessionId: "ses_x" });
    expect(decodeEphemeral(encodeEphemeral(withSession))).toEqual({ type: "presence", user_id: "usr_a", status: "idle", session_id: "ses_x" });
  });

  it("encodes as one CBOR map (major type 5), as the server's codec expects", () => {
    const bytes = encodeEphemeral(typingMessage("usr_a", "ses_b"));
    expect(bytes[0]! >> 5).toBe(5);
    expect(cbor.decode(bytes)).toEqual({ type: "typing", user_id: "usr_a", session_id: "ses_b" });
  });

  it("decodes agent_output with integers as floats or BigInts, and rejects malformed ones", () => {
    const ok = decodeEphemeral({ type: "agent_output", session_id: "s", message_id: "m", part_id: "p", kind: "text", text: "He", seq: 3n });
    expect(ok).toEqual(agentOutputMessage({ session_id: "s", message_id: "m", part_id: "p", kind: "text", text: "He", seq: 3 }));
    expect(decodeEphemeral({ type: "agent_output", session_id: "s", message_id: "m", part_id: "p", text: "x", seq: 1.5 })).toBeNull();
    expect(decodeEphemeral({ type: "agent_output", session_id: "s", message_id: "m", part_id: "p", text: "x", seq: -1 })).toBeNull();
    expect(decodeEphemeral({ type: "agent_output", session_id: "s", message_id: "m", text: "x", seq: 0 })).toBeNull();
  });

  it("decodes heartbeats with a 64-bit time and refusals", () => {
    const at = 1_795_338_399_978; // beyond 32 bits: cbor-x sends a float64
    expect(decodeEphemeral(encodeEphemeral({ type: "heartbeat", session_id: "s", sandbox_state: "up", at, restarts: 0 }))).toEqual({
      type: "heartbeat",
      session_id: "s",
      sandbox_state: "up",
      at,
      restarts: 0,
    });
    expect(decodeEphemeral({ type: "refused", reason: "read_only", message: "viewers cannot write" })).toEqual({
      type: "refused",
      reason: "read_only",
      message: "viewers cannot write",
    });
  });

  it("ignores unknown types, unknown fields and garbage", () => {
    expect(decodeEphemeral({ type: "cursor_party", x: 1 })).toBeNull();
    expect(decodeEphemeral("presence")).toBeNull();
    expect(decodeEphemeral(new Uint8Array([0xff, 0x00]))).toBeNull();
    expect(decodeEphemeral({ type: "typing", user_id: "u", session_id: "s", extra: true })).toEqual({ type: "typing", user_id: "u", session_id: "s" });
    // unknown presence status values are kept
    expect(decodeEphemeral({ type: "presence", user_id: "u", status: "focused" })).toMatchObject({ status: "focused" });
  });

  it("checks the 64 KiB limit", () => {
    const small = agentOutputMessage({ session_id: "s", message_id: "m", part_id: "p", kind: "text", text: "x", seq: 0 });
    const big = { ...small, text: "x".repeat(MAX_EPHEMERAL_BYTES) };
    expect(fitsEphemeralLimit(small)).toBe(true);
    expect(fitsEphemeralLimit(big)).toBe(false);
  });
});
