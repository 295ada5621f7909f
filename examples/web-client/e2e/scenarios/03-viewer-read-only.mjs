/**
 * A viewer sees the feature live, has no enabled edit control, and a write
 * forced through the client's own repo handle is refused by the server: it
 * reaches neither the owner's page nor the server's snapshot, and the
 * viewer's page says the server did not accept it.
 */
import * as Automerge from "@automerge/automerge";
import { T, assert, sleep, until } from "../lib/env.mjs";
import { waitText } from "../lib/browser.mjs";
import { appendNotes, decision, keyFile, learning, openDoc, queueEntry } from "../lib/seed.mjs";

const FORCED = "forced in by a viewer";
const FORCED_NOTE = "VIEWER WAS HERE";

/** Enabled controls that could change something, in `main`. Tabs, the
 * learnings filter, the details toggle and "jump to latest" only change
 * what this page shows. */
async function editControls(page) {
  return page.evaluate(() => {
    const found = [];
    for (const el of document.querySelectorAll("main button, main input, main textarea, main select")) {
      if (el.disabled || el.readOnly) continue;
      if (el.getAttribute("role") === "tab") continue;
      if (el.matches("input[type=search], .side-toggle, .jump")) continue;
      if (el.textContent?.trim() === "Load the full output") continue;
      found.push(`${el.tagName.toLowerCase()} "${(el.textContent || el.getAttribute("aria-label") || el.getAttribute("placeholder") || "").trim().slice(0, 40)}"`);
    }
    return found;
  });
}

export default {
  name: "viewer: sees everything, every edit control disabled, a forced write is refused",
  async run(t) {
    const server = await t.server();
    const alice = await server.owner();
    await server.addUser("bob", "Bob Stone");
    const carol = await server.addUser("carol", "Carol Viewer");
    const { featureId, docUrl } = await server.createFeature(alice.token, "Read-only for some", "Viewers watch, members work.");
    await server.setMember(alice.token, featureId, "bob", "contributor");
    await server.setMember(alice.token, featureId, "carol", "viewer");
    const sessionId = await server.createSession(alice.token, featureId, "the work", "Write one file.");
    const seed = await openDoc(server, alice, docUrl);
    seed.change("seed content", (d) => {
      d.learnings.push(learning(alice.userId, "Viewers can read every learning", { importance: "high", files: ["src/auth.rs"] }));
      d.decisions.push(decision(alice.userId, "Keep viewers read-only", "The server enforces it"));
      keyFile(d, "src/auth.rs", "where roles are checked");
      appendNotes(d, "Shared notes everyone can read.");
      d.queue.push(queueEntry(alice.userId, sessionId, "write viewer.txt: seen by all"));
    });
    await seed.serverHas("the seeded content", featureId, (d) => d.queue.length === 1 && d.learnings.length === 1);
    await seed.close();
    await until(
      "the seeded prompt to run to done",
      async () => (await server.snapshot(alice.token, featureId)).document.queue[0]?.status === "done",
      { timeout: T.agent, interval: 500 },
    );
    t.step("feature with content and one finished run");

    const A = await t.person(server, alice);
    const C = await t.person(server, carol);
    await A.gotoFeature(featureId);
    await C.gotoFeature(featureId);
    await C.waitOnline();

    // Carol sees the content.
    const page = C.page;
    await waitText("the title", page.locator(".dashboard h1"), (s) => s === "Read-only for some");
    await waitText("the learning", page.locator(".know-text").filter({ hasText: "Viewers can read every learning" }), () => true);
    await until("the notes", async () => (await page.locator(".notes-text").inputValue()) === "Shared notes everyone can read.");
    await waitText("the key file", page.locator(".keyfile-list .path"), (s) => s === "src/auth.rs");
    await waitText("the session", page.locator(".session-title"), (s) => s === "the work");
    await waitText("her role", page.locator(".feature-facts .chip"), (s) => s === "viewer");
    await waitText("the read-only note", page.locator(".readonly-note"), (s) => s.includes("You are a viewer"));
    await page.getByRole("tab", { name: /Decisions/ }).click();
    await waitText("the decision", page.locator(".know-text"), (s) => s.includes("Keep viewers read-only"));
    t.step("dashboard content visible to the viewer");

    // No edit control on the dashboard.
    assert(await page.locator(".notes-text").evaluate((el) => el.readOnly), "the notes are read-only");
    let controls = await editControls(page);
    assert(controls.length === 0, `no enabled edit control on the dashboard, found: ${controls.join(", ")}`);
    for (const name of ["Add learning", "Record decision", "New session", "Mark", "Edit", "Withdraw", "Remove"]) {
      const enabled = page.getByRole("button", { name, exact: true }).and(page.locator(":enabled"));
      assert((await enabled.count()) === 0, `no enabled "${name}" button`);
    }
    await page.getByRole("tab", { name: /Learnings/ }).click();

    // Nor in the session view (with its transcript).
    await page.locator(".session-title", { hasText: "the work" }).click();
    await waitText("the transcript's answer", page.locator(".msg-agent .part-text"), (s) => s.includes("Wrote viewer.txt."));
    await waitText("the files changed", page.locator(".session-side .file-list .path"), (s) => s === "viewer.txt");
    assert(await page.locator(".composer textarea").isDisabled(), "the composer is disabled");
    assert(await page.getByRole("button", { name: "Queue" }).isDisabled(), "Queue is disabled");
    assert((await page.locator(".composer-status").innerText()).includes("You can read this session, but not prompt it."), "the composer says why");
    controls = await editControls(page);
    assert(controls.length === 0, `no enabled edit control in the session view, found: ${controls.join(", ")}`);
    await page.locator(".crumbs a", { hasText: "Read-only for some" }).click();
    await page.locator(".notes-text").waitFor();
    t.step("no enabled edit control anywhere");

    // 1. A forced write through the client's own repo handle (what a
    //    tampered client would do): it stays in the viewer's replica.
    const forced = await page.evaluate(
      async ({ docUrl, userId, text, note }) => {
        const handle = await window.canopy.find(docUrl);
        handle.change(
          (d) => {
            d.learnings.push({ id: "lrn_forcedbyviewer2345abc", text, author: userId, importance: "high", files: [], created_at: Date.now() });
            d.notes = note + " " + String(d.notes);
          },
          { message: "a viewer forcing a write" },
        );
        return handle.doc().learnings.some((l) => String(l.text) === text);
      },
      { docUrl, userId: carol.userId, text: FORCED, note: FORCED_NOTE },
    );
    assert(forced, "the forced learning is in the viewer's own replica");
    await waitText("the viewer's page to show its local change", page.locator(".know-text").filter({ hasText: FORCED }), () => true, T.ui);
    await until("the viewer's unsynced count to show the change", async () => (await C.unsyncedCount()) >= 1, { timeout: T.ui });
    t.step("forced change made in the viewer's replica");
    // The client announces heads the server does not have: the server
    // tells it that its changes were not accepted.
    const refusedBanner = page.locator(".banner-bad[role=alert]");
    const refusedText = (s) => s.includes("did not accept your changes") && s.includes("read_only");
    await waitText("the viewer's page to say the server refused the change", refusedBanner, refusedText);
    await refusedBanner.getByRole("button", { name: "Dismiss" }).click();
    await refusedBanner.waitFor({ state: "detached", timeout: T.ui });
    t.step("the server refused the local change (refused notice shown, dismissed)");

    // A reload makes a new connection and a new sync exchange with the
    // change already in the replica (IndexedDB): refused again.
    await page.reload();
    await page.locator(".notes-text").waitFor({ timeout: 30_000 });
    await C.waitOnline();
    await waitText("the forced learning, from IndexedDB", page.locator(".know-text").filter({ hasText: FORCED }), () => true);
    await waitText("the refused notice after the reload", refusedBanner, refusedText);

    // 2. Push it raw: a sync message that carries the change, sent through
    //    the client's own automerge-repo network adapter. (automerge's sync
    //    protocol sends changes only when the other side asks for them, and
    //    the server never asks a viewer; this makes the server look.) The
    //    server must not take it (checked below, with the audit log).
    const docId = docUrl.replace(/^automerge:/, "");
    const binary = await page.evaluate(async (id) => Array.from(await window.canopy.repo.export(id)), docId);
    const replica = Automerge.load(Uint8Array.from(binary));
    const change = Automerge.getAllChanges(replica).find((c) => Automerge.decodeChange(c).message === "a viewer forcing a write");
    assert(change, "the forced change is in the viewer's stored document");
    const data = Automerge.encodeSyncMessage({ heads: Automerge.getHeads(replica), need: [], have: [], changes: [change] });
    await page.evaluate(
      ({ docId, data }) => {
        const c = window.canopy;
        c.adapter.send({ type: "sync", senderId: c.peerId, targetId: c.state.serverPeerId, documentId: docId, data: Uint8Array.from(data) });
      },
      { docId, data: Array.from(data) },
    );
    t.step("the change pushed raw");

    // The owner keeps working; the viewer still receives changes.
    await A.page.getByRole("button", { name: "Add learning" }).click();
    await A.page.getByRole("textbox", { name: "New learning" }).fill("The owner writes after the refusal");
    await A.page.getByRole("button", { name: "Add", exact: true }).click();
    await waitText("the viewer to receive the owner's new learning", page.locator(".know-text").filter({ hasText: "The owner writes after the refusal" }), () => true);
    await until("the server to have the owner's learning", async () =>
      (await server.snapshot(alice.token, featureId)).document.learnings.some((l) => l.text === "The owner writes after the refusal"),
    );
    // Give a leaked change every chance to arrive, then look.
    await sleep(2000);
    const audit = await server.api(alice.token, "GET", `/features/${featureId}/audit`);
    assert(
      audit.entries.some((e) => e.action === "change_rejected" && e.user_id === carol.userId),
      `the audit log records the refusal: ${JSON.stringify(audit.entries.map((e) => e.action))}`,
    );
    const doc = (await server.snapshot(alice.token, featureId)).document;
    assert(!doc.learnings.some((l) => l.text === FORCED), "the server's snapshot has no forced learning");
    assert(!doc.notes.includes(FORCED_NOTE), "the server's notes are untouched");
    assert(doc.notes === "Shared notes everyone can read.", `server notes unchanged: ${JSON.stringify(doc.notes)}`);
    assert((await A.page.locator(".know-text", { hasText: FORCED }).count()) === 0, "the owner's page has no forced learning");
    assert(!(await A.page.locator(".notes-text").inputValue()).includes(FORCED_NOTE), "the owner's notes are untouched");
    const aliceHas = await A.page.evaluate(
      ({ text }) => Object.values(window.canopy.repo.handles).some((h) => h.isReady() && (h.doc()?.learnings ?? []).some((l) => String(l.text) === text)),
      { text: FORCED },
    );
    assert(!aliceHas, "the owner's replica has no forced learning");
  },
};
