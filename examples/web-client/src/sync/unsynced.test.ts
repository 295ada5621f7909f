import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { FeatureDoc } from "../schema";
import { appendQueueEntry, spliceNotes } from "../doc/write";
import { unsyncedCount } from "./unsynced";
import { ALICE, SES_A, fork, serverFeature } from "../test/fixtures";

/** The heads the server announces in its next sync message to us. */
function announcedHeads(server: A.Doc<unknown>): string[] {
  const [, message] = A.generateSyncMessage(server, A.initSyncState());
  return A.decodeSyncMessage(message!).heads;
}

describe("unsyncedCount", () => {
  it("counts local changes until the server's announced heads include them", () => {
    let server: A.Doc<FeatureDoc> = serverFeature();
    let client = fork(server, "c11e47");
    expect(unsyncedCount(client, announcedHeads(server))).toBe(0);

    client = A.change(client, (d) => void appendQueueEntry(d, { sessionId: SES_A, author: ALICE, text: "one", now: 1 }));
    client = A.change(client, (d) => void spliceNotes(d, "", "offline note"));
    expect(unsyncedCount(client, announcedHeads(server))).toBe(2);

    // The server receives the first change only.
    const [first] = A.getChangesSince(client, A.getHeads(server));
    [server] = A.applyChanges(server, [first!]);
    expect(unsyncedCount(client, announcedHeads(server))).toBe(1);

    server = A.merge(server, client);
    expect(unsyncedCount(client, announcedHeads(server))).toBe(0);
  });

  it("cannot tell while the server has changes we have not received", () => {
    const server = A.change(serverFeature(), (d) => void spliceNotes(d, "", "server side"));
    const client = fork(serverFeature(), "c11e47");
    expect(unsyncedCount(client, announcedHeads(server))).toBeNull();
    expect(unsyncedCount(client, undefined)).toBeNull();
  });

  it("does not count the server's own changes once we have them", () => {
    let server = serverFeature();
    let client = fork(server, "c11e47");
    server = A.change(server, (d) => void spliceNotes(d, "", "from the server"));
    client = A.merge(client, server);
    expect(unsyncedCount(client, announcedHeads(server))).toBe(0);
  });
});
