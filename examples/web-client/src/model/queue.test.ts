import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc } from "../schema";
import { readFeature } from "../doc/feature";
import { appendQueueEntry } from "../doc/write";
import { myPlaceInLine, positionLabel, queueModel } from "./queue";
import { ALICE, BOB, SES_A, SES_B, s, serverFeature } from "../test/fixtures";

function featureWithQueue() {
  let doc = serverFeature();
  doc = A.change(doc, (d: FeatureDoc) => {
    appendQueueEntry(d, { sessionId: SES_A, author: BOB, text: "a1 running", now: 1, id: "q_a1aaaaaaaaaaaaaaaaaa" });
    appendQueueEntry(d, { sessionId: SES_B, author: ALICE, text: "b1", now: 2, id: "q_b1aaaaaaaaaaaaaaaaaa" });
    appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "a2", now: 3, id: "q_a2aaaaaaaaaaaaaaaaaa" });
    appendQueueEntry(d, { sessionId: SES_A, author: BOB, text: "a0 done", now: 0, id: "q_a0aaaaaaaaaaaaaaaaaa" });
    appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "a3", now: 4, id: "q_a3aaaaaaaaaaaaaaaaaa" });
    d.queue[0]!.status = s("running");
    d.queue[3]!.status = s("done");
    d.queue[3]!.finished_at = 50;
  });
  return readFeature(doc);
}

describe("queueModel", () => {
  it("numbers waiting entries per session in list order", () => {
    const q = queueModel(featureWithQueue(), ALICE);
    expect(q.active.map((e) => [e.text, e.position])).toEqual([
      ["a1 running", 0],
      ["b1", 0],
      ["a2", 1],
      ["a3", 2],
    ]);
    expect(q.finished.map((e) => [e.text, e.position])).toEqual([["a0 done", null]]);
  });

  it("lets the author cancel only their own queued entries, and only with write access", () => {
    const q = queueModel(featureWithQueue(), ALICE);
    expect(q.active.filter((e) => e.canCancel).map((e) => e.text)).toEqual(["b1", "a2", "a3"]);
    const viewer = queueModel(featureWithQueue(), ALICE, { canWrite: false });
    expect(viewer.active.some((e) => e.canCancel)).toBe(false);
    const bob = queueModel(featureWithQueue(), BOB);
    expect(bob.active.filter((e) => e.canCancel)).toEqual([]); // Bob's only active entry runs
  });

  it("marks entries of sessions that wait on dependencies", () => {
    const q = queueModel(featureWithQueue(), ALICE, { sessionId: SES_B });
    expect(q.active).toHaveLength(1);
    expect(q.active[0]!.blocked).toBe(true); // SES_B depends on SES_A, which is not completed
    expect(positionLabel(q.active[0]!)).toBe("next, waiting on dependencies");
  });

  it("tells the user where their next prompt sits", () => {
    expect(myPlaceInLine(featureWithQueue(), ALICE, SES_A)).toEqual({ entryId: "q_a2aaaaaaaaaaaaaaaaaa", position: 1, waiting: 2 });
    expect(myPlaceInLine(featureWithQueue(), BOB, SES_A)).toBeNull();
  });

  it("labels positions for people", () => {
    const [running, , a2] = queueModel(featureWithQueue(), ALICE).active;
    expect(positionLabel(running!)).toBe("running");
    expect(positionLabel(a2!)).toBe("1 ahead");
  });
});
