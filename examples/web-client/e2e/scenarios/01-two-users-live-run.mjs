/**
 * Two people on one feature, each in their own browser: the owner queues
 * prompts from the session view's composer, the contributor watches them
 * queue, run, stream (ephemeral `agent_output` deltas) and settle, and sees
 * the file the agent wrote; both see each other's presence, and Bob
 * offline as soon as he closes the page.
 */
import { T, assert, until } from "../lib/env.mjs";
import { waitText } from "../lib/browser.mjs";
import { installRecorder, readRecorder } from "../lib/recorder.mjs";

const PROMPT = "write hello.txt: hi";
const SLOW = "slow 12: Streaming to everyone watching";
const SLOW_FINAL = "Streaming to everyone watching" + Array.from({ length: 11 }, (_, i) => ` ${i + 1}`).join("");

export default {
  name: "two users: queue from the composer, watch it run and stream, presence",
  async run(t) {
    const server = await t.server();
    const alice = await server.owner();
    const bob = await server.addUser("bob", "Bob Stone");
    const { featureId } = await server.createFeature(alice.token, "Two people, one agent", "Alice prompts, Bob watches.");
    await server.setMember(alice.token, featureId, "bob", "contributor");
    const sessionId = await server.createSession(alice.token, featureId, "hello file", "Write a greeting file.");
    t.step("server, users, feature, session ready");

    const A = await t.person(server, alice);
    const B = await t.person(server, bob);
    await A.gotoSession(featureId, sessionId);
    await B.gotoSession(featureId, sessionId);
    await A.waitOnline();
    await B.waitOnline();
    await installRecorder(B.page);
    t.step("both on the session view, online");

    // Presence, both ways (the avatar's label is "<name>, <state>").
    const present = (name) => new RegExp(`^${name}, (active|idle|away)$`);
    await until("Alice to see Bob present", async () => {
      const labels = await A.page.locator(".presence-row [role=img]").evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")));
      return labels.some((l) => present("Bob Stone").test(l ?? ""));
    });
    await until("Bob to see Alice present", async () => {
      const labels = await B.page.locator(".presence-row [role=img]").evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")));
      return labels.some((l) => present(alice.name).test(l ?? ""));
    });
    t.step("presence seen both ways");

    // Alice queues from the composer with Enter.
    const composer = A.page.locator(".composer textarea");
    await composer.click();
    await composer.fill(PROMPT);
    await composer.press("Enter");
    await until("the composer to clear after Enter", async () => (await composer.inputValue()) === "", { timeout: T.ui });
    t.step("Alice queued the prompt with Enter");

    // Bob: queued, then running (the recorder saw every status rendered).
    const statuses = async () => (await readRecorder(B.page)).statuses[PROMPT] ?? [];
    await until("Bob to see the prompt queued", async () => (await statuses()).includes("queued"));
    await until("Bob to see the prompt running", async () => (await statuses()).includes("running"), { timeout: T.agent });
    const seen = await statuses();
    assert(seen.indexOf("queued") < seen.indexOf("running"), `queued before running, saw ${seen.join(" → ")}`);
    t.step(`Bob saw ${seen.join(" → ")}`);

    // The answer, then the file in "files changed".
    const agentText = B.page.locator(".msg-agent .part-text");
    await waitText("Bob to see the agent's answer", agentText.filter({ hasText: "Wrote hello.txt." }), (s) => s.includes("Wrote hello.txt."), T.agent);
    const toolLine = B.page.locator(".msg-agent details.tool summary");
    await waitText("Bob to see the write tool call", toolLine, (s) => /write/.test(s) && /hello\.txt/.test(s), T.ui);
    const files = B.page.locator(".session-side .file-list .path");
    await waitText("Bob to see hello.txt in files changed", files.filter({ hasText: "hello.txt" }), (s) => s === "hello.txt", T.agent);
    // Alice sees the same.
    await waitText("Alice to see hello.txt in files changed", A.page.locator(".session-side .file-list .path").filter({ hasText: "hello.txt" }), (s) => s === "hello.txt", T.sync);
    t.step("answer and files changed seen");
    // Bob opens the session's diff (from the API): the file and its line.
    await B.page.locator(".session-side details.diff summary").click();
    await waitText(
      "Bob to see the diff of hello.txt",
      B.page.locator(".session-side .diff-file").filter({ hasText: "hello.txt" }).locator(".diff-patch"),
      (s) => s.includes("+hi"),
      T.agent,
    );
    t.step("the session's diff shows hello.txt");

    // A slow answer: Bob sees it grow from ephemeral deltas before the
    // transcript document has it.
    await composer.fill(SLOW);
    await composer.press("Enter");
    await waitText(
      "Bob to see the whole slow answer settle",
      B.page.locator(".msg-agent:not(.is-streaming) .part-text").filter({ hasText: SLOW_FINAL }),
      (s) => s.includes(SLOW_FINAL),
      T.agent,
    );
    const streamed = (await readRecorder(B.page)).streaming.filter((x) => x.text.startsWith("Streaming to everyone"));
    const growing = streamed.filter((x) => SLOW_FINAL.startsWith(x.text.trim()));
    assert(growing.length >= 3, `Bob saw the answer grow in at least 3 steps while streaming (saw ${growing.length}: ${JSON.stringify(streamed.map((x) => x.text))})`);
    assert(
      growing.some((x) => !x.inDocument),
      `some streamed text was shown before the transcript document had it (ephemeral deltas): ${JSON.stringify(streamed)}`,
    );
    for (let i = 1; i < growing.length; i++) assert(growing[i].text.length >= growing[i - 1].text.length, "streamed text never shrinks");
    t.step(`Bob saw the slow answer in ${growing.length} steps, ${growing.filter((x) => !x.inDocument).length} of them ahead of the document`);

    // Both prompts settle as done (the entry settles in its own change,
    // just after the answer lands in the transcript), and Bob's page says so.
    const entries = await until("both entries to be done on the server", async () => {
      const doc = (await server.snapshot(alice.token, featureId)).document;
      const mine = doc.queue.filter((q) => q.session_id === sessionId);
      return mine.length === 2 && mine.every((q) => q.status === "done") ? mine : null;
    });
    assert(entries.every((q) => q.author === alice.userId), "authored by Alice");
    await until("Bob's queue to be empty", async () => (await B.page.locator(".session-side .queue-row").count()) === 0);
    const bobSaw = (await readRecorder(B.page)).statuses[SLOW] ?? [];
    assert(bobSaw.includes("running"), `Bob saw the slow prompt running: ${bobSaw.join(" → ")}`);

    // Bob closes the tab: Alice sees him offline at once (presence
    // `left`), well before his last presence would expire (at least 22 s:
    // presence goes out every 10 s and counts for 32 s).
    await B.page.close({ runBeforeUnload: true });
    await until(
      "Alice to see Bob offline after he left",
      async () => {
        const labels = await A.page.locator(".presence-row [role=img]").evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")));
        return labels.includes("Bob Stone, offline");
      },
      { timeout: 15_000 },
    );
    t.step("Bob left: Alice saw him offline at once");
  },
};
