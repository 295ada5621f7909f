import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import { readFeature } from "./feature";
import { ALICE, BOB, SES_A, SES_B, s, serverFeature } from "../test/fixtures";

describe("readFeature", () => {
  it("reads a server-created document with scalar strings and Text", () => {
    const view = readFeature(serverFeature());
    expect(view.featureId).toBe("ftr_aaaaaaaaaaaaaaaaaaaa");
    expect(view.title).toBe("Add OAuth login");
    expect(view.status).toBe("active");
    expect(view.writable).toBe(true);
    expect(view.participants.map((p) => [p.userId, p.name, p.role])).toEqual([
      [ALICE, "Alice", "owner"],
      [BOB, "Bob", "contributor"],
    ]);
    expect(view.sessions.map((x) => x.id)).toEqual([SES_A, SES_B]);
    expect(view.sessions[1]!.dependsOn).toEqual([SES_A]);
    expect(view.sessions[0]!.usage).toEqual({ inputTokens: 0, outputTokens: 0, costUsd: 0 });
  });

  it("accepts Text where the server writes scalars (what JS Automerge 3 writes)", () => {
    const doc = A.change(serverFeature(), (d) => {
      d.queue.push({
        id: "q_aaaaaaaaaaaaaaaaaaaa",
        session_id: SES_A,
        author: BOB,
        text: "hello",
        created_at: 5,
        status: "queued",
      });
    });
    const [entry] = readFeature(doc).queue;
    expect(entry).toMatchObject({ id: "q_aaaaaaaaaaaaaaaaaaaa", sessionId: SES_A, author: BOB, status: "queued", index: 0 });
  });

  it("keeps unknown status values and fills defaults for missing fields", () => {
    const doc = A.change(serverFeature(), (d) => {
      (d.sessions[SES_A] as unknown as Record<string, unknown>).status = s("hibernating-someday");
      const raw = d.sessions[SES_B] as unknown as Record<string, unknown>;
      delete raw.usage;
      delete raw.files_changed;
      raw.sandbox = { backend: s("docker"), state: s("failed"), workspace_ready: true, branch: null, head: null, detail: "daemon down" };
      delete (d as unknown as Record<string, unknown>).queue; // not how clients write; readers must cope
    });
    const view = readFeature(doc);
    const a = view.sessions.find((x) => x.id === SES_A)!;
    const b = view.sessions.find((x) => x.id === SES_B)!;
    expect(a.status).toBe("hibernating-someday");
    expect(b.filesChanged).toEqual([]);
    expect(b.usage.inputTokens).toBe(0);
    expect(b.sandbox).toEqual({ backend: "docker", state: "failed", workspaceReady: true, branch: null, head: null, detail: "daemon down" });
    expect(view.queue).toEqual([]);
  });

  it("reads any numeric type for numbers and skips malformed list items", () => {
    const doc = A.change(serverFeature(), (d) => {
      const raw = d as unknown as Record<string, unknown[]>;
      raw.learnings!.push({ id: "lrn_aaaaaaaaaaaaaaaaaaaa", text: "uses PKCE", author: s(ALICE), importance: s("high"), files: [s("src/auth.rs")], created_at: new A.Counter(42) });
      raw.learnings!.push("not a map");
      raw.learnings!.push({ text: "no id" });
      raw.decisions!.push({ id: s("dec_aaaaaaaaaaaaaaaaaaaa"), decision: "Use octocrab", rationale: "typed", alternatives: ["reqwest"], author: s(BOB), created_at: 7.0 });
    });
    const view = readFeature(doc);
    expect(view.learnings).toHaveLength(1);
    expect(view.learnings[0]).toMatchObject({ text: "uses PKCE", importance: "high", files: ["src/auth.rs"], createdAt: 42, index: 0 });
    expect(view.decisions[0]).toMatchObject({ decision: "Use octocrab", alternatives: ["reqwest"], createdAt: 7 });
  });

  it("reads the repository, whole-history clones included (absent means shallow)", () => {
    expect(readFeature(serverFeature()).repo).toBeNull();
    const shallow = A.change(serverFeature(), (d) => {
      d.repo = { url: "https://github.com/acme/app.git", base_branch: "main", feature_branch: null };
    });
    expect(readFeature(shallow).repo).toEqual({ url: "https://github.com/acme/app.git", baseBranch: "main", featureBranch: null, fullClone: false });
    const full = A.change(shallow, (d) => {
      d.repo!.full_clone = true;
    });
    expect(readFeature(full).repo?.fullClone).toBe(true);
    const garbage = A.change(A.clone(shallow), (d) => {
      (d.repo as unknown as Record<string, unknown>).full_clone = "yes";
    });
    expect(readFeature(garbage).repo?.fullClone).toBe(false);
  });

  it("marks a document with a newer schema read-only", () => {
    const doc = A.change(serverFeature(), (d) => {
      d.schema = 2;
    });
    expect(readFeature(doc).writable).toBe(false);
  });

  it("never throws on garbage", () => {
    expect(readFeature(null).sessions).toEqual([]);
    expect(readFeature({ sessions: [1, 2], participants: "x" }).participants).toEqual([]);
  });
});
