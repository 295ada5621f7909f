import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc } from "../schema";
import { readFeature } from "../doc/feature";
import { addLearning, appendQueueEntry } from "../doc/write";
import { canWrite, featureRows, filterLearnings, myRole, nameOf, recentTranscripts, sessionCards } from "./feature";
import { ALICE, BOB, SES_A, SES_B, s, serverFeature } from "../test/fixtures";

describe("feature view models", () => {
  it("builds list rows from the REST list and the live documents", () => {
    const doc = A.change(serverFeature(), (d: FeatureDoc) => {
      appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "go", now: 1_800_000_000_000 });
      (d.sessions[SES_A] as unknown as Record<string, unknown>).status = s("running");
    });
    const items = [
      { feature_id: "ftr_aaaaaaaaaaaaaaaaaaaa", doc_url: "automerge:x", title: "stale title", status: "active", created_by: ALICE, created_at: 1, updated_at: 2 },
      { feature_id: "ftr_bbbbbbbbbbbbbbbbbbbb", doc_url: "automerge:y", title: "Other", status: "archived", created_by: ALICE, created_at: 1, updated_at: 5 },
    ];
    const rows = featureRows(items, new Map([["ftr_aaaaaaaaaaaaaaaaaaaa", readFeature(doc)]]));
    expect(rows[0]).toMatchObject({ title: "Add OAuth login", sessionCount: 2, runningSessions: 1, waitingPrompts: 1, lastActivity: 1_800_000_000_000, loaded: true });
    expect(rows[0]!.participants.map((p) => p.name)).toEqual(["Alice", "Bob"]);
    expect(rows[1]).toMatchObject({ title: "Other", loaded: false, lastActivity: 5 });
  });

  it("picks the transcripts of the newest sessions to keep on the device", () => {
    const f = readFeature(serverFeature());
    const [a, b] = f.sessions;
    const sessions = [
      { ...a!, id: "ses_old", createdAt: 1, transcript: "automerge:old" },
      { ...b!, id: "ses_new", createdAt: 3, transcript: "automerge:new" },
      { ...a!, id: "ses_none", createdAt: 5, transcript: null },
      { ...b!, id: "ses_mid", createdAt: 2, transcript: "automerge:mid" },
    ];
    expect(recentTranscripts(sessions, 2)).toEqual(["automerge:new", "automerge:mid"]);
    expect(recentTranscripts(sessions, 10)).toEqual(["automerge:new", "automerge:mid", "automerge:old"]);
  });

  it("derives the role and write access", () => {
    const f = readFeature(serverFeature());
    expect(myRole(f, BOB, null)).toBe("contributor");
    expect(myRole(f, BOB, "viewer")).toBe("viewer"); // the members endpoint is the authority
    expect(canWrite("contributor", f)).toBe(true);
    expect(canWrite("viewer", f)).toBe(false);
    expect(canWrite(null, f)).toBe(false);
    const newer = readFeature(A.change(serverFeature(), (d: FeatureDoc) => void (d.schema = 9)));
    expect(canWrite("owner", newer)).toBe(false);
  });

  it("shows dependencies and what blocks a session", () => {
    const cards = sessionCards(readFeature(serverFeature()));
    const b = cards.find((c) => c.session.id === SES_B)!;
    expect(b.dependsOn).toEqual([{ id: SES_A, title: "research", status: "idle", done: false }]);
    expect(b.blockedBy.map((x) => x.id)).toEqual([SES_A]);
  });

  it("filters learnings by every word, including author names and files", () => {
    const doc = A.change(serverFeature(), (d: FeatureDoc) => {
      addLearning(d, { text: "Tokens expire hourly", author: ALICE, now: 1, files: ["src/token.rs"] });
      addLearning(d, { text: "Rate limits apply", author: BOB, now: 2 });
    });
    const f = readFeature(doc);
    const names = (id: string) => nameOf(f, id);
    expect(filterLearnings(f.learnings, "token alice", names).map((l) => l.text)).toEqual(["Tokens expire hourly"]);
    expect(filterLearnings(f.learnings, "bob", names).map((l) => l.text)).toEqual(["Rate limits apply"]);
    expect(filterLearnings(f.learnings, "  ", names)).toHaveLength(2);
    expect(nameOf(f, `agent:${SES_A}`)).toBe("agent (research)");
    expect(nameOf(f, ALICE, ALICE)).toBe("you");
  });
});
