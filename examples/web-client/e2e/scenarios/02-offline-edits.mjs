/**
 * Offline and back: Alice's browser loses the network, she adds a learning
 * and queues a prompt; Bob edits the shared notes meanwhile; when Alice is
 * back everything merges on both pages and her prompt runs. The offline
 * banner and the unsynced count show while offline and clear after. Bob,
 * offline in turn, reads the transcript of the session he never opened.
 */
import { T, assert, until } from "../lib/env.mjs";
import { waitText } from "../lib/browser.mjs";
import { appendNotes, openDoc } from "../lib/seed.mjs";

const LEARNING = "Offline edits merge when the connection returns";
const PROMPT = "write offline.txt: written on a train";
const BOB_NOTE = " Bob added this while Alice was offline.";

export default {
  name: "offline: learning and prompt offline, notes edited meanwhile, all merge and run",
  async run(t) {
    const server = await t.server();
    const alice = await server.owner();
    const bob = await server.addUser("bob", "Bob Stone");
    const { featureId, docUrl } = await server.createFeature(alice.token, "Offline first", "Work continues without a connection.");
    await server.setMember(alice.token, featureId, "bob", "contributor");
    const sessionId = await server.createSession(alice.token, featureId, "train ride");
    const seed = await openDoc(server, alice, docUrl);
    seed.change("seed notes", (d) => appendNotes(d, "Plan: work offline."));
    await seed.serverHas("the seeded notes", featureId, (d) => d.notes.includes("Plan: work offline."));
    await seed.close();
    t.step("feature with notes and a session");

    const A = await t.person(server, alice);
    const B = await t.person(server, bob);
    await A.gotoFeature(featureId);
    await B.gotoFeature(featureId);
    await A.waitOnline();
    await B.waitOnline();
    await waitText("Bob's notes to load", B.page.locator(".notes-text"), () => true);
    await until("Bob's notes to show the plan", async () => (await B.page.locator(".notes-text").inputValue()).includes("Plan: work offline."));

    // ---- Alice goes offline.
    await A.context.setOffline(true);
    const banner = A.page.locator(".banner-offline");
    await banner.waitFor({ state: "visible", timeout: 15_000 });
    assert((await banner.innerText()).includes("Offline."), "the banner says Offline");
    assert((await A.connectionStatus()) !== "online", "Alice's connection is not online");
    assert((await A.page.locator(".conn-pill").innerText()).includes("Offline"), "the top bar says Offline");
    t.step("Alice offline: banner shown");

    // A learning, from the dashboard.
    await A.page.getByRole("button", { name: "Add learning" }).click();
    await A.page.getByRole("textbox", { name: "New learning" }).fill(LEARNING);
    await A.page.getByRole("button", { name: "Add", exact: true }).click();
    await waitText("Alice to see her learning", A.page.locator(".know-item .know-text").filter({ hasText: LEARNING }), (s) => s.includes(LEARNING), T.ui);
    await until("the unsynced count to show", async () => (await A.unsyncedCount()) > 0, { timeout: T.ui });
    t.step(`learning added offline, ${await A.unsyncedCount()} unsynced`);

    // A prompt, from the session view (client-side navigation).
    await A.page.locator(".session-title", { hasText: "train ride" }).click();
    const composer = A.page.locator(".composer textarea");
    await composer.waitFor();
    await waitText("the composer to say the prompt waits for the connection", A.page.locator(".composer-status"), (s) => s.startsWith("Offline"), T.ui);
    await composer.fill(PROMPT);
    await composer.press("Enter");
    await waitText("Alice to see her pending prompt", A.page.locator(".msg-pending .msg-text").filter({ hasText: PROMPT }), (s) => s === PROMPT, T.ui);
    const unsyncedOffline = await A.unsyncedCount();
    assert(unsyncedOffline >= 2, `at least 2 unsynced changes (learning, prompt), saw ${unsyncedOffline}`);
    assert(await banner.isVisible(), "the banner stays while offline");
    t.step(`prompt queued offline, ${unsyncedOffline} unsynced`);

    // Meanwhile Bob edits the notes.
    const bobNotes = B.page.locator(".notes-text");
    await bobNotes.click();
    await B.page.keyboard.press("Control+End");
    await B.page.keyboard.type(BOB_NOTE, { delay: 15 });
    await until("the server to have Bob's notes", async () => (await server.snapshot(alice.token, featureId)).document.notes.includes(BOB_NOTE.trim()));
    // Nothing crossed while Alice is offline.
    const aliceNotes = await A.page.evaluate(() => {
      const h = Object.values(window.canopy.repo.handles).find((x) => x.isReady() && x.doc()?.feature_id !== undefined);
      return String(h?.doc()?.notes ?? "");
    });
    assert(aliceNotes.includes("Plan: work offline."), `Alice's replica has the notes (${JSON.stringify(aliceNotes)})`);
    assert(!aliceNotes.includes(BOB_NOTE.trim()), "Alice's replica does not have Bob's edit while offline");
    const serverDoc = (await server.snapshot(alice.token, featureId)).document;
    assert(!serverDoc.learnings.some((l) => l.text === LEARNING), "the server does not have Alice's learning while she is offline");
    assert((await B.page.locator(".know-text", { hasText: LEARNING }).count()) === 0, "Bob does not see the learning yet");
    t.step("Bob edited the notes; nothing crossed");

    // ---- Alice is back.
    await A.context.setOffline(false);
    await A.waitOnline();
    await until("Alice's unsynced count to reach 0", async () => (await A.unsyncedCount()) === 0);
    await banner.waitFor({ state: "detached", timeout: 15_000 });
    assert(((await A.page.locator(".unsynced").innerText()) ?? "").trim() === "", "no unsynced label");
    t.step("Alice online: banner gone, 0 unsynced");

    // Bob sees the learning and the prompt.
    await waitText("Bob to see Alice's learning", B.page.locator(".know-item .know-text").filter({ hasText: LEARNING }), (s) => s.includes(LEARNING));
    await waitText("Bob to see Alice's prompt", B.page.locator(".queue-text").filter({ hasText: PROMPT }), (s) => s === PROMPT);
    // Alice sees Bob's notes and her learning on the dashboard.
    await A.page.locator(".crumbs a", { hasText: "Offline first" }).click();
    await until("Alice's notes to have Bob's edit", async () => (await A.page.locator(".notes-text").inputValue()).includes(BOB_NOTE.trim()));
    assert((await A.page.locator(".notes-text").inputValue()).startsWith("Plan: work offline."), "the notes kept their start");
    await waitText("Alice to see her learning after reconnecting", A.page.locator(".know-item .know-text").filter({ hasText: LEARNING }), (s) => s.includes(LEARNING));
    assert((await B.page.locator(".notes-text").inputValue()) === (await A.page.locator(".notes-text").inputValue()), "same notes on both pages");
    t.step("both pages merged");

    // The prompt runs to done.
    await until(
      "the offline prompt to run to done",
      async () => (await server.snapshot(alice.token, featureId)).document.queue.find((q) => q.text === PROMPT)?.status === "done",
      { timeout: T.agent, interval: 500 },
    );
    await A.page.locator(".session-title", { hasText: "train ride" }).click();
    await waitText("Alice to see the agent's answer", A.page.locator(".msg-agent .part-text").filter({ hasText: "Wrote offline.txt." }), () => true, T.sync);
    const entry = (await server.snapshot(alice.token, featureId)).document.queue.find((q) => q.text === PROMPT);
    assert(entry.author === alice.userId, "the prompt is Alice's");
    t.step("the offline prompt ran");

    // Bob never opened the session, yet his device keeps its transcript
    // (the dashboard brings recent transcripts along): offline, it reads.
    await until("Bob's device to hold the transcript with the answer", () =>
      B.page.evaluate(() =>
        Object.values(window.canopy.repo.handles).some((h) => h.isReady() && Array.isArray(h.doc()?.messages) && JSON.stringify(h.doc().messages).includes("Wrote offline.txt.")),
      ),
    );
    await B.context.setOffline(true);
    await B.page.locator(".banner-offline").waitFor({ state: "visible", timeout: 15_000 });
    await B.page.locator(".session-title", { hasText: "train ride" }).click();
    await waitText("Bob to read the answer offline", B.page.locator(".msg-agent .part-text").filter({ hasText: "Wrote offline.txt." }), () => true, T.ui);
    t.step("Bob read the transcript of a session he never opened, offline");
  },
};
