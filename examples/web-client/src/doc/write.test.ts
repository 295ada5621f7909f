import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc } from "../schema";
import { isValidId } from "../schema";
import { readFeature } from "./feature";
import {
  WriteError,
  addDecision,
  addLearning,
  appendQueueEntry,
  cancelQueueEntry,
  deleteLearning,
  editDecision,
  editLearning,
  markKeyFile,
  spliceNotes,
  unmarkKeyFile,
} from "./write";
import { ALICE, BOB, SES_A, SES_B, fork, s, serverFeature } from "../test/fixtures";

/** Change a copy, so that one document can be branched in several ways. */
const change = (doc: A.Doc<FeatureDoc>, fn: (d: FeatureDoc) => void) => A.change(A.clone(doc), fn);

describe("appendQueueEntry", () => {
  it("appends a queued entry with a valid id, scalar machine values and Text prose", () => {
    let id = "";
    const doc = change(serverFeature(), (d) => {
      id = appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "write hello.txt: hi", now: 1234.7 });
    });
    expect(isValidId("q_", id)).toBe(true);
    const raw = doc.queue[0]!;
    expect(A.isImmutableString(raw.id)).toBe(true);
    expect(A.isImmutableString(raw.status)).toBe(true);
    expect(A.isImmutableString(raw.author)).toBe(true);
    expect(typeof raw.text).toBe("string"); // Text
    expect(readFeature(doc).queue[0]).toMatchObject({ id, sessionId: SES_A, author: ALICE, text: "write hello.txt: hi", status: "queued", createdAt: 1234 });
  });

  it("refuses what the server would reject", () => {
    const doc = serverFeature();
    const attempt = (p: Partial<Parameters<typeof appendQueueEntry>[1]>) => () =>
      change(doc, (d) => {
        appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "x", now: 1, ...p });
      });
    expect(attempt({ text: "   " })).toThrow(WriteError);
    expect(attempt({ sessionId: "ses_nosuchsessionaaaaaa" })).toThrow(/no session/);
    expect(attempt({ author: "" })).toThrow(WriteError);
    expect(attempt({ text: "é".repeat(40 * 1024) })).toThrow(/KiB/);
  });

  it("keeps both entries when two people append concurrently, in one merged order", () => {
    const base = serverFeature();
    const alice = change(fork(base, "a11ce0"), (d) => void appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "from alice", now: 1 }));
    const bob = change(fork(base, "b0b000"), (d) => void appendQueueEntry(d, { sessionId: SES_A, author: BOB, text: "from bob", now: 1 }));
    const ab = readFeature(A.merge(A.clone(alice), bob)).queue.map((q) => q.text);
    const ba = readFeature(A.merge(A.clone(bob), alice)).queue.map((q) => q.text);
    expect(ab.sort()).toEqual(["from alice", "from bob"]);
    expect(readFeature(A.merge(A.clone(alice), bob)).queue.map((q) => q.text)).toEqual(
      readFeature(A.merge(A.clone(bob), alice)).queue.map((q) => q.text),
    );
    expect(ba).toHaveLength(2);
  });
});

describe("cancelQueueEntry", () => {
  const withEntries = () => {
    let mine = "";
    let theirs = "";
    const doc = change(serverFeature(), (d) => {
      mine = appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "one", now: 1 });
      theirs = appendQueueEntry(d, { sessionId: SES_A, author: BOB, text: "two", now: 2 });
    });
    return { doc, mine, theirs };
  };

  it("cancels the user's own queued entry and sets finished_at", () => {
    const { doc, mine } = withEntries();
    let result = "";
    const after = change(doc, (d) => void (result = cancelQueueEntry(d, mine, ALICE, 99)));
    expect(result).toBe("cancelled");
    expect(readFeature(after).queue[0]).toMatchObject({ status: "cancelled", finishedAt: 99 });
    expect(A.isImmutableString(after.queue[0]!.status)).toBe(true);
  });

  it("leaves other people's entries and entries past queued alone", () => {
    const { doc, mine, theirs } = withEntries();
    let r1 = "";
    const a = change(doc, (d) => void (r1 = cancelQueueEntry(d, theirs, ALICE, 5)));
    expect(r1).toBe("not_author");
    const running = change(doc, (d) => {
      d.queue[0]!.status = s("running");
    });
    let r2 = "";
    const b = change(running, (d) => void (r2 = cancelQueueEntry(d, mine, ALICE, 5)));
    expect(r2).toBe("not_queued");
    expect(readFeature(b).queue[0]!.status).toBe("running");
    expect(readFeature(a).queue.map((q) => q.status)).toEqual(["queued", "queued"]);
    let r3 = "";
    change(doc, (d) => void (r3 = cancelQueueEntry(d, "q_missingaaaaaaaaaaaaa", ALICE, 5)));
    expect(r3).toBe("not_found");
  });
});

describe("learnings and decisions", () => {
  it("adds a learning with defaults and edits it in place", () => {
    let id = "";
    const doc = change(serverFeature(), (d) => {
      id = addLearning(d, { text: "tokens expire after 1 h", author: ALICE, now: 10, files: ["src/auth.rs"] });
    });
    expect(isValidId("lrn_", id)).toBe(true);
    expect(readFeature(doc).learnings[0]).toMatchObject({ id, importance: "medium", files: ["src/auth.rs"], author: ALICE });
    const edited = change(doc, (d) => {
      expect(editLearning(d, id, { text: "tokens expire after 2 h", importance: "high", files: ["src/auth.rs", "src/token.rs"] })).toBe(true);
    });
    expect(readFeature(edited).learnings[0]).toMatchObject({ text: "tokens expire after 2 h", importance: "high", files: ["src/auth.rs", "src/token.rs"] });
    expect(() => change(doc, (d) => void editLearning(d, id, { importance: "urgent" }))).toThrow(/importance/);
  });

  it("merges two people's concurrent edits of the same learning's text", () => {
    let id = "";
    const base = change(serverFeature(), (d) => void (id = addLearning(d, { text: "the API is slow", author: ALICE, now: 1 })));
    const alice = change(fork(base, "a11ce0"), (d) => void editLearning(d, id, { text: "the search API is slow" }));
    const bob = change(fork(base, "b0b000"), (d) => void editLearning(d, id, { text: "the API is slow under load" }));
    const merged = readFeature(A.merge(A.clone(alice), bob));
    expect(merged.learnings[0]!.text).toBe("the search API is slow under load");
  });

  it("deletes a learning", () => {
    let id = "";
    const doc = change(serverFeature(), (d) => void (id = addLearning(d, { text: "x", author: ALICE, now: 1 })));
    const after = change(doc, (d) => void deleteLearning(d, id));
    expect(readFeature(after).learnings).toEqual([]);
  });

  it("adds a decision and edits its alternatives in place", () => {
    let id = "";
    const doc = change(serverFeature(), (d) => {
      id = addDecision(d, { decision: "Use octocrab", rationale: "typed API", alternatives: ["reqwest", " "], author: BOB, now: 3 });
    });
    expect(readFeature(doc).decisions[0]).toMatchObject({ id, decision: "Use octocrab", alternatives: ["reqwest"] });
    const objBefore = A.getObjectId(doc.decisions[0]!, "alternatives");
    const edited = change(doc, (d) => {
      editDecision(d, id, { rationale: "typed API, maintained", alternatives: ["reqwest + serde", "ureq"] });
    });
    const view = readFeature(edited).decisions[0]!;
    expect(view.rationale).toBe("typed API, maintained");
    expect(view.alternatives).toEqual(["reqwest + serde", "ureq"]);
    // The list was edited, not replaced (README §6.1).
    expect(A.getObjectId(edited.decisions[0]!, "alternatives")).toBe(objBefore);
    const fewer = change(edited, (d) => void editDecision(d, id, { alternatives: ["ureq"] }));
    expect(readFeature(fewer).decisions[0]!.alternatives).toEqual(["ureq"]);
  });
});

describe("key files", () => {
  it("marks a file once per session and updates its note", () => {
    const doc = change(serverFeature(), (d) => {
      markKeyFile(d, "src/auth.rs", "entry point", SES_A);
    });
    const again = change(doc, (d) => {
      markKeyFile(d, " src/auth.rs ", "the entry point", SES_A);
      markKeyFile(d, "src/auth.rs", "the entry point", SES_B);
    });
    expect(readFeature(again).keyFiles).toEqual([{ path: "src/auth.rs", note: "the entry point", sessions: [SES_A, SES_B] }]);
    expect(() => change(doc, (d) => void markKeyFile(d, "/etc/passwd", ""))).toThrow(/relative/);
    expect(() => change(doc, (d) => void markKeyFile(d, "a\nb", ""))).toThrow(WriteError);
    const gone = change(again, (d) => void unmarkKeyFile(d, "src/auth.rs"));
    expect(readFeature(gone).keyFiles).toEqual([]);
  });
});

describe("spliceNotes", () => {
  it("keeps both people's words when they type at once", () => {
    const base = change(serverFeature(), (d) => void spliceNotes(d, "", "Plan: login"));
    const alice = change(fork(base, "a11ce0"), (d) => void spliceNotes(d, "Plan: login", "Plan: GitHub login"));
    const bob = change(fork(base, "b0b000"), (d) => void spliceNotes(d, "Plan: login", "Plan: login and logout"));
    expect(readFeature(A.merge(A.clone(alice), bob)).notes).toBe("Plan: GitHub login and logout");
    // The notes Text object is the server's, edited in place.
    expect(A.getObjectId(A.merge(A.clone(alice), bob), "notes")).toBe(A.getObjectId(base, "notes"));
  });

  it("does not write when nothing changed and refuses a newer schema", () => {
    const doc = serverFeature();
    const same = change(doc, (d) => {
      expect(spliceNotes(d, "", "")).toBe(false);
    });
    expect(A.getHeads(same)).toEqual(A.getHeads(doc));
    const newer = change(doc, (d) => {
      d.schema = 2;
    });
    expect(() => change(newer, (d) => void spliceNotes(d, "", "x"))).toThrow(/schema 2/);
  });
});
