/**
 * The history browser. Alice (owner) and Bob (contributor) work on a
 * feature, some of it seeded from Node under their own names and some on
 * their pages: learnings added, notes typed, a decision recorded, a
 * learning deleted. Then, on `/f/:id/history`:
 *
 * - the timeline lists the runs of changes under the right names;
 * - the scrubber, moved with the keyboard, shows the feature as it was (the
 *   deleted learning is there one step back, and not now);
 * - a diff between two points marks Bob's typed words as inserted and the
 *   deleted learning as deleted;
 * - "Restore this" puts the learning back: Bob's live dashboard shows it,
 *   and the timeline's newest entry is the restore, by Alice;
 * - the page's URL, opened in a fresh page, shows the same version; a link
 *   to heads the feature does not have shows the server's message;
 * - Carol (viewer, on a phone) sees the same history with "Restore this"
 *   disabled;
 * - screenshots at desktop and phone widths, with nothing sticking out.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { E2E_DIR, T, assert, until } from "../lib/env.mjs";
import { DESKTOP, PHONE, shoot, waitText } from "../lib/browser.mjs";
import { appendNotes, decision, keyFile, learning, openDoc } from "../lib/seed.mjs";

const SHOTS = join(E2E_DIR, "screenshots");
const DOOMED = "State tokens expire after 10 minutes; tests must not sleep past that.";
const ADDED = "Refresh tokens are rotated on every use.";
// Long enough (one change per keystroke) that the history needs two pages.
const BOB_TYPED = "Who owns the Google Cloud project? Ask in Friday's review.";


/** The version shown: the banner's text and the learnings listed. */
async function shownVersion(page) {
  return {
    banner: (await page.locator(".version-banner .vb-text").innerText()).trim(),
    learnings: await page.locator(".version .know-text").allInnerTexts(),
  };
}

export default {
  name: "history: timeline by author, scrubbing to the past, a diff, restoring a deleted learning, deep links",
  needsAgents: false,
  async run(t) {
    mkdirSync(SHOTS, { recursive: true });
    const server = await t.server({ dispatch: false });
    const alice = await server.owner();
    const bob = await server.addUser("bob", "Bob Stone");
    const carol = await server.addUser("carol", "Carol Viewer");
    const { featureId, docUrl } = await server.createFeature(
      alice.token,
      "Add OAuth login",
      "Sign in with GitHub or Google instead of passwords; existing accounts link by verified email.",
    );
    await server.setMember(alice.token, featureId, "bob", "contributor");
    await server.setMember(alice.token, featureId, "carol", "viewer");

    // Earlier work, written from Node as each of them (the server records
    // who delivered each change).
    const a = await openDoc(server, alice, docUrl);
    a.change("add a learning", (d) => void d.learnings.push(learning(alice.userId, "GitHub hides some users' emails; ask the /user/emails endpoint.", { importance: "high", files: ["src/auth/github.rs"] })));
    a.change("add a learning", (d) => void d.learnings.push(learning(alice.userId, "Google's id_token is enough; no userinfo call needed.")));
    a.change("add a learning", (d) => void d.learnings.push(learning(alice.userId, DOOMED, { importance: "low" })));
    a.change("mark a key file", (d) => keyFile(d, "src/auth/oauth.rs", "the flow, start to finish"));
    await a.serverHas("Alice's learnings", featureId, (d) => d.learnings.length === 3 && Object.keys(d.key_files).length === 1);
    await a.close();
    const b = await openDoc(server, bob, docUrl);
    b.change("edit the notes", (d) => appendNotes(d, "Open questions:\n- Do we need Microsoft accounts for the first release?\n"));
    b.change("record a decision", (d) => void d.decisions.push(decision(bob.userId, "Link accounts by verified email only", "Unverified emails would let anyone take over an account.", ["Link by username"])));
    await b.serverHas("Bob's notes and decision", featureId, (d) => d.decisions.length === 1 && d.notes.includes("Open questions"));
    await b.close();
    t.step("earlier work seeded as Alice and as Bob");

    // Then on their pages: Alice adds a learning, Bob types in the notes,
    // Alice deletes a learning.
    const A = await t.person(server, alice, { viewport: DESKTOP });
    const B = await t.person(server, bob, { viewport: DESKTOP });
    await A.gotoFeature(featureId);
    await B.gotoFeature(featureId);
    await A.waitOnline();
    await B.waitOnline();
    await A.page.getByRole("button", { name: "Add learning" }).click();
    await A.page.getByRole("textbox", { name: "New learning" }).fill(ADDED);
    await A.page.getByRole("button", { name: "Add", exact: true }).click();
    await until("the server to have Alice's new learning", async () => (await server.snapshot(alice.token, featureId)).document.learnings.some((l) => l.text === ADDED));

    const notes = B.page.locator(".notes-text");
    await until("Bob's notes to load", async () => (await notes.inputValue()).includes("Open questions"));
    await notes.click();
    await B.page.keyboard.press("Control+End");
    await B.page.keyboard.type(`- ${BOB_TYPED}`, { delay: 15 });
    await until("the server to have Bob's typing", async () => (await server.snapshot(alice.token, featureId)).document.notes.includes(BOB_TYPED));

    const doomed = A.page.locator(".know-item").filter({ hasText: DOOMED });
    await doomed.getByRole("button", { name: "Edit" }).click();
    A.page.once("dialog", (d) => d.accept());
    await A.page.locator(".know-item.editing").getByRole("button", { name: "Delete" }).click();
    await until("the server to lose the learning", async () => !(await server.snapshot(alice.token, featureId)).document.learnings.some((l) => l.text === DOOMED));
    await until("Bob's dashboard to lose it", async () => (await B.page.locator(".know-text").filter({ hasText: DOOMED }).count()) === 0);
    t.step("learning added, notes typed, learning deleted, on the pages");

    // ---------------------------------------------------------------- the timeline
    await A.page.getByRole("link", { name: "History" }).click();
    const page = A.page;
    await until("the history page", async () => new URL(page.url()).pathname === `/f/${featureId}/history`, { timeout: T.ui });
    await page.locator(".tl-group").first().waitFor();
    // More than one page (50): the rest loads as the list's end scrolls into view.
    await waitText("the whole history to load", page.locator(".tl-end"), (s) => s === "The feature was created here");
    const total = Number(await page.locator(".history-timeline .card-head .count").innerText());
    assert(total > 50, `more than a page of changes (${total})`);
    const groups = async () =>
      page.locator(".tl-group > .tl-head").evaluateAll((els) =>
        els.map((el) => ({ who: el.querySelector(".tl-who")?.textContent ?? "", summary: el.querySelector(".tl-summary")?.textContent ?? "" })),
      );
    let g = await groups();
    t.step(`timeline: ${g.map((x) => `${x.who}: ${x.summary}`).join(" | ")}`);
    const expect = [
      [alice.name, "deleted a learning"],
      ["Bob Stone", "edited notes (+"],
      [alice.name, "added a learning"],
      ["Bob Stone", "edited notes"],
      [alice.name, "created the feature"],
    ];
    for (const [i, [who, what]] of expect.entries()) {
      assert(g[i]?.who === who, `group ${i} is by ${who} (saw ${g[i]?.who})`);
      assert(g[i]?.summary.startsWith(what), `group ${i} says "${what}…" (saw "${g[i]?.summary}")`);
    }
    assert(g[3].summary.includes("added a decision"), `Bob's earlier group also added the decision ("${g[3].summary}")`);
    assert(g[4].summary.includes("added 3 learnings"), `Alice's first sitting added the learnings ("${g[4].summary}")`);
    assert(g.length === 5, `five groups (saw ${g.length})`);
    // Bob's keystrokes are one group; it opens to the single changes.
    const bobGroup = page.locator(".tl-group").nth(1);
    assert(/\d+ changes/.test(await bobGroup.locator(".tl-when").innerText()), "Bob's typing is a group of changes");
    await bobGroup.locator(".tl-toggle").click();
    assert((await bobGroup.locator(".tl-change").count()) >= BOB_TYPED.length, "the group lists each keystroke's change");
    await bobGroup.locator(".tl-toggle").click();
    t.step("the timeline names the authors and groups Bob's typing");

    // ---------------------------------------------------------------- scrubbing
    const slider = page.getByRole("slider", { name: "Version" });
    await waitText("the banner to say now", page.locator(".version-banner"), (s) => s.startsWith("Now"));
    let v = await shownVersion(page);
    assert(!v.learnings.some((l) => l.includes(DOOMED)), "now: the deleted learning is not shown");
    await slider.focus();
    await page.keyboard.press("End");
    await page.keyboard.press("ArrowLeft");
    await waitText("the banner to show a past version", page.locator(".version-banner"), (s) => s.startsWith("As of") && s.includes("Bob Stone"));
    await waitText("the deleted learning in the past version", page.locator(".version .know-text").filter({ hasText: DOOMED }), () => true, T.ui);
    const before = await shownVersion(page);
    const beforeUrl = page.url();
    const beforeAt = new URL(beforeUrl).searchParams.get("at");
    assert(beforeAt && /^[0-9a-f]{64}$/.test(beforeAt), `the URL carries the version (${beforeUrl})`);
    assert((await page.locator(".tl-head.selected .tl-who").innerText()) === "Bob Stone", "the selected change (Bob's last keystroke) is highlighted in the timeline");
    assert((await B.page.locator(".know-text").filter({ hasText: DOOMED }).count()) === 0, "the live dashboard does not have it");
    await page.keyboard.press("ArrowRight");
    await waitText("the banner to say now again", page.locator(".version-banner"), (s) => s.startsWith("Now"));
    v = await shownVersion(page);
    assert(!v.learnings.some((l) => l.includes(DOOMED)), "back at now: no deleted learning");
    // Further back, before Alice added her learning on the page.
    const addGroup = page.locator(".tl-group").nth(2).locator(".tl-main");
    await addGroup.click();
    await waitText("the version before Bob typed", page.locator(".version .version-notes"), (s) => !s.includes(BOB_TYPED));
    assert((await page.locator(".version .know-text").filter({ hasText: ADDED }).count()) === 1, "Alice's learning is in the version she added it");
    t.step("scrubbed with the keyboard and by clicking; the feature as it was");

    // ---------------------------------------------------------------- diff
    await addGroup.click({ modifiers: ["Shift"] });
    await page.locator(".compare").waitFor();
    await slider.focus();
    await page.keyboard.press("End");
    await waitText("the comparison to now", page.locator(".compare-head h2"), (s) => s.includes("to now"));
    await waitText("Bob's typing marked as inserted", page.locator(".compare ins"), (s) => s.includes(BOB_TYPED) || s.includes("Google Cloud"), T.ui);
    const ins = (await page.locator(".compare .diff-section", { hasText: "Notes" }).locator("ins").allInnerTexts()).join("");
    assert(ins.includes(BOB_TYPED), `the notes diff inserts Bob's words (${JSON.stringify(ins)})`);
    const deleted = page.locator(".compare .diff-item.diff-deleted", { hasText: DOOMED });
    await deleted.waitFor();
    assert((await deleted.locator("del").allInnerTexts()).join("").includes(DOOMED), "the deleted learning is struck through");
    const style = await page.locator(".compare del").first().evaluate((el) => getComputedStyle(el).textDecorationLine);
    assert(style.includes("line-through"), `deletions are struck through (${style})`);
    assert(await page.locator(".tl-head .chip", { hasText: "base" }).isVisible(), "the base is marked in the timeline");
    await shoot(t, page, "history-desktop-compare");
    await page.getByRole("button", { name: "Stop comparing" }).click();
    await page.locator(".compare").waitFor({ state: "detached" });
    t.step("diff: inserted notes and the deleted learning highlighted");

    // ---------------------------------------------------------------- restore
    await page.goto(beforeUrl);
    await waitText("the pre-delete version", page.locator(".version .know-text").filter({ hasText: DOOMED }), () => true);
    const item = page.locator(".version .know-item").filter({ hasText: DOOMED });
    await waitText("the learning marked deleted since", item.locator(".restore .chip"), (s) => s === "deleted since");
    await shoot(t, page, "history-desktop");
    await item.getByRole("button", { name: "Restore this" }).click();
    await waitText("the confirmation", page.locator(".history-notice"), (s) => s.startsWith("Restored learning"), T.ui);
    await waitText("Bob's live dashboard to have it back", B.page.locator(".know-text").filter({ hasText: DOOMED }), () => true);
    // The restore joins Alice's run of changes (the deletion, a minute ago).
    await until("the timeline to show the restore first", async () => {
      g = await groups();
      return g[0]?.who === alice.name && g[0]?.summary === "added a learning, deleted a learning";
    });
    const first = page.locator(".tl-group").first();
    await first.locator(".tl-toggle").click();
    const restoreMsg = await first.locator(".tl-change").first().locator(".tl-msg").innerText();
    assert(restoreMsg.startsWith("restore learnings/"), `the restore's message (${restoreMsg})`);
    assert((await first.locator(".tl-change").first().locator(".tl-summary").innerText()) === "added a learning", "the restore put a learning back");
    await until("the restore button to go (same as now)", async () => (await item.getByRole("button", { name: "Restore this" }).count()) === 0, { timeout: T.sync });
    // The server names the restorer too (once its attribution is written).
    await until("the server to name Alice as the restorer", async () => {
      const h = await server.api(alice.token, "GET", `/features/${featureId}/history?limit=1`);
      return h.changes[0]?.author === alice.userId;
    });
    t.step("restored; Bob sees it; the timeline shows Alice's restore");

    // ---------------------------------------------------------------- filters
    /** The groups once the filtered timeline has loaded to its end. */
    const everyGroup = (test) => async () => {
      const done = await page.locator(".tl-scroll:not(.stale)[aria-busy=false] .tl-end").innerText();
      if (done.trim() !== "End of the matching changes") return false;
      const list = await groups();
      return list.length > 0 && list.every(test) ? list : false;
    };
    await page.getByLabel("Author").selectOption({ label: "Bob Stone" });
    g = await until("only Bob's changes", everyGroup((x) => x.who === "Bob Stone"));
    assert(new URL(page.url()).searchParams.get("author") === bob.userId, "the author filter is in the URL");
    // With Alice's changes left out, Bob's two sittings (a minute apart) are one run.
    assert(g.length === 1 && g[0].summary === "edited notes (+131), added a decision", `Bob's changes as one run (saw ${JSON.stringify(g)})`);
    await page.getByLabel("Author").selectOption({ label: "Everyone" });
    await page.getByLabel("Kind").selectOption({ label: "Learnings" });
    g = await until("only changes to learnings", everyGroup((x) => x.summary.includes("learning")));
    assert(!g.some((x) => x.summary.includes("notes")), "no notes in the learnings filter");
    const pathBox = page.getByLabel("Path");
    await pathBox.fill("notes");
    await pathBox.press("Enter");
    // (The feature's first change made the notes too.)
    g = await until("only changes to the notes", everyGroup((x) => (x.summary.includes("notes") || x.summary === "created the feature") && !x.summary.includes("learning")));
    assert(await page.getByLabel("Kind").isDisabled(), "a typed path stands in for the kind");
    assert(new URL(page.url()).search.includes("path=notes"), "the path is in the URL");
    await page.getByRole("button", { name: "Clear filters" }).click();
    await waitText("the full timeline again", page.locator(".tl-scroll:not(.stale)[aria-busy=false] .tl-end"), (s) => s === "The feature was created here");
    g = await groups();
    assert(g.length === 5, `everything listed again (${g.length} groups)`);
    t.step("filters: author, kind and path narrow the timeline");

    // ---------------------------------------------------------------- deep links
    const fresh = await A.context.newPage();
    await fresh.goto(beforeUrl);
    await waitText("the deep link's version", fresh.locator(".version .know-text").filter({ hasText: DOOMED }), () => true);
    await waitText("the deep link's banner", fresh.locator(".version-banner .vb-text"), (s) => s === before.banner);
    const same = await shownVersion(fresh);
    assert(JSON.stringify(same.learnings) === JSON.stringify(before.learnings), "the same learnings as before");
    await fresh.goto(`${server.url}/f/${featureId}/history?at=${beforeAt}&author=${bob.userId}`);
    await waitText("the filtered deep link's banner", fresh.locator(".version-banner .vb-text"), (s) => s === before.banner);
    assert((await fresh.getByLabel("Author").inputValue()) === bob.userId, "the author filter comes from the link");
    await waitText("the selected change highlighted", fresh.locator(".tl-head.selected .tl-who"), (s) => s === "Bob Stone");
    // A version on the second page: the timeline loads older pages until it has it.
    const all = await server.api(alice.token, "GET", `/features/${featureId}/history?limit=200`);
    const decided = all.changes.find((c) => c.message === "record a decision");
    await fresh.goto(`${server.url}/f/${featureId}/history?at=${decided.hash}`);
    await waitText("the old version's banner", fresh.locator(".version-banner .vb-text"), (s) => s.startsWith("As of") && s.includes("Bob Stone"));
    await waitText("its change highlighted, once its page loaded", fresh.locator(".tl-head.selected .tl-summary"), (s) => s === "edited notes (+71), added a decision");
    await fresh.goto(`${server.url}/f/${featureId}/history?at=${"ab".repeat(32)}`);
    await waitText("the server's message for unknown heads", fresh.locator(".history-view .error-note"), (s) => s.includes("has no change"));
    await fresh.close();
    t.step("deep link reproduces the version; unknown heads show the server's message");

    // ---------------------------------------------------------------- a viewer, on a phone
    const C = await t.person(server, carol, { viewport: PHONE, isMobile: true });
    await C.page.goto(`${server.url}/f/${featureId}/history?at=${beforeAt}`);
    await waitText("Carol's version", C.page.locator(".version .know-text").filter({ hasText: DOOMED }), () => true);
    // Bob's seeded notes (before he typed) differ from now: offered, but not
    // to her. They are on the second page ("Load older", unless the list's
    // end was in view and it loaded on its own).
    await until("Carol's whole timeline", async () => {
      const more = C.page.locator(".tl-end button:enabled");
      if (await more.count()) await more.click();
      return (await C.page.locator(".tl-end").innerText()).trim() === "The feature was created here";
    });
    await C.page.locator(".tl-group").nth(3).locator(".tl-main").click();
    const restoreNotes = C.page.locator(".version .card", { hasText: "Notes" }).getByRole("button", { name: "Restore this" });
    await restoreNotes.waitFor();
    assert(await restoreNotes.isDisabled(), "the viewer's Restore this is disabled");
    const why = await C.page.locator(".version .card", { hasText: "Notes" }).locator(".restore-wrap").getAttribute("title");
    assert(why === "Viewers cannot restore", `it says why (${why})`);
    await C.page.evaluate(() => window.scrollTo(0, 0));
    await shoot(t, C.page, "history-phone");
    await shoot(t, C.page, "history-phone-full", { fullPage: true });
    t.step("the viewer's Restore this is disabled, with why");
  },
};
