/**
 * Screenshots of the dashboard and the session view (a transcript with a
 * tool call and streamed text) at desktop (1280×800) and phone (390×844)
 * widths, into e2e/screenshots/. Checked here: nothing sticks out sideways,
 * the transcript shows the tool call and the streamed answer. Looked at by
 * a person: readable, aligned, calm.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { E2E_DIR, T, assert, until } from "../lib/env.mjs";
import { DESKTOP, PHONE, shoot, waitText } from "../lib/browser.mjs";
import { appendNotes, decision, keyFile, learning, openDoc, queueEntry } from "../lib/seed.mjs";

const SHOTS = join(E2E_DIR, "screenshots");
const ANSWER = "I added the login entry point in src/auth/oauth.rs and kept the callback handler separate, so the token exchange can be tested on its own.";


export default {
  name: "screenshots: dashboard and session view, desktop and phone, no overflow",
  async run(t) {
    mkdirSync(SHOTS, { recursive: true });
    const server = await t.server();
    const alice = await server.owner();
    const bob = await server.addUser("bob", "Bob Stone");
    const { featureId, docUrl } = await server.createFeature(
      alice.token,
      "Add OAuth login",
      "Sign in with GitHub or Google instead of passwords; existing accounts link by verified email.",
    );
    await server.setMember(alice.token, featureId, "bob", "contributor");
    const backend = await server.createSession(alice.token, featureId, "OAuth backend", "Provider config, token exchange, account linking. Not the UI.");
    const ui = await server.createSession(alice.token, featureId, "Login page", "The sign-in screen and its error states.", [backend]);
    const seed = await openDoc(server, alice, docUrl);
    seed.change("seed the dashboard", (d) => {
      const hour = 3_600_000;
      d.learnings.push(learning(alice.userId, "GitHub returns no email for users who hide it; ask the /user/emails endpoint.", { importance: "high", files: ["src/auth/github.rs"], at: Date.now() - 5 * hour }));
      d.learnings.push(learning(alice.userId, "Google's id_token is enough; no userinfo call needed.", { files: ["src/auth/google.rs"], at: Date.now() - 4 * hour }));
      d.learnings.push(learning(alice.userId, "State tokens expire after 10 minutes; tests must not sleep past that.", { importance: "low", at: Date.now() - 3 * hour }));
      d.learnings.push(learning(alice.userId, "A very long path that must wrap nicely: src/auth/providers/oauth2/callback_handlers/very_long_module_name_for_wrapping.rs", { files: ["src/auth/providers/oauth2/callback_handlers/very_long_module_name_for_wrapping.rs"], at: Date.now() - 2 * hour }));
      d.decisions.push(decision(alice.userId, "Link accounts by verified email only", "Unverified emails would let anyone take over an account.", ["Link by username", "Never link automatically"], Date.now() - 6 * hour));
      d.decisions.push(decision(alice.userId, "Store refresh tokens encrypted", "They outlive sessions.", [], Date.now() - hour));
      keyFile(d, "src/auth/oauth.rs", "the flow, start to finish", [backend]);
      keyFile(d, "src/http/routes.rs", "where /auth/* is mounted");
      appendNotes(d, "Open questions:\n- Do we need Microsoft accounts for the first release?\n- Who owns the Google Cloud project?\n\nRelease after the security review.");
      d.queue.push(queueEntry(alice.userId, ui, "Build the sign-in page with both provider buttons and an error banner."));
    });
    await seed.serverHas("the seeded content", featureId, (d) => d.learnings.length === 4 && d.queue.length === 1);
    await seed.close();
    t.step("feature seeded");

    const A = await t.person(server, alice, { viewport: DESKTOP });
    const B = await t.person(server, bob, { viewport: PHONE, isMobile: true });
    await B.gotoFeature(featureId);
    await A.gotoSession(featureId, backend);
    await A.waitOnline();
    await B.waitOnline();
    const sees = (P, name) =>
      until(`${P.name} to see ${name} present`, async () =>
        (await P.page.locator(".presence-row [role=img]").evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")))).some((l) =>
          new RegExp(`^${name}(?: \\(you\\))?, (active|idle|away)$`).test(l ?? ""),
        ),
      );
    await sees(A, "Bob Stone");
    await sees(B, alice.name);

    // A run with a tool call and a slowly streamed answer, queued from the
    // composer (Shift+Enter for the new lines).
    const composer = A.page.locator(".composer textarea");
    await composer.click();
    await composer.pressSequentially("script:");
    await composer.press("Shift+Enter");
    await composer.pressSequentially("write src/auth/oauth.rs: pub fn login() {}");
    await composer.press("Shift+Enter");
    await composer.pressSequentially(`slow 14: ${ANSWER}`);
    assert((await composer.inputValue()).split("\n").length === 3, "Shift+Enter adds lines");
    await composer.press("Enter");
    await until("the composer to clear", async () => (await composer.inputValue()) === "", { timeout: T.ui });

    // Mid-stream.
    await A.page.locator(".msg-agent.is-streaming .part-text").filter({ hasText: "I added the login" }).waitFor({ timeout: 150_000 });
    await waitText("the tool call line", A.page.locator(".msg-agent details.tool summary"), (s) => s.includes("src/auth/oauth.rs"), T.ui);
    await shoot(t, A.page, "session-desktop-streaming");

    // Settled, and the files changed.
    const settled = ANSWER + Array.from({ length: 13 }, (_, i) => ` ${i + 1}`).join("");
    await waitText("the settled answer", A.page.locator(".msg-agent:not(.is-streaming) .part-text").filter({ hasText: "13" }), (s) => s.includes(settled), T.agent);
    await waitText("files changed", A.page.locator(".session-side .file-list .path"), (s) => s === "src/auth/oauth.rs", T.agent);
    await A.page.locator(".msg-agent details.tool summary").first().click();
    await A.page.locator(".msg-agent details.tool[open] .tool-body").waitFor();
    await shoot(t, A.page, "session-desktop");

    await A.page.locator(".crumbs a", { hasText: "Add OAuth login" }).click();
    await A.page.locator(".notes-text").waitFor();
    await waitText("the people panel", A.page.locator(".people-list"), (s) => s.includes("Bob Stone"));
    await shoot(t, A.page, "dashboard-desktop", { fullPage: true });

    // The phone (on the dashboard all along).
    await waitText("the learnings on the phone", B.page.locator(".know-text").first(), (s) => s.length > 0);
    await shoot(t, B.page, "dashboard-phone");
    await shoot(t, B.page, "dashboard-phone-full", { fullPage: true });
    await B.page.locator(".session-title", { hasText: "OAuth backend" }).click();
    await waitText("the transcript on the phone", B.page.locator(".msg-agent .part-text"), (s) => s.includes("I added the login"));
    await shoot(t, B.page, "session-phone");
    await B.page.locator(".side-toggle").click();
    await waitText("the phone's details panel", B.page.locator(".session-side .file-list .path"), (s) => s === "src/auth/oauth.rs");
    await shoot(t, B.page, "session-phone-details");
  },
};
