/**
 * GitHub from the browser, against the fake GitHub (OAuth web flow, REST,
 * git over HTTP): Bob signs in with GitHub from a link to a feature and
 * lands back on it (a new Canopy user, his token cleared from the address
 * bar); his prompt runs in a sandbox that clones with his GitHub token;
 * "Open pull request" pushes the session's branch and opens the PR as him,
 * and the link shows in the session. Alice (an API-token user) tries to
 * link the GitHub account Bob already linked, and is told why not.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { T, assert, ms, until } from "../lib/env.mjs";
import { waitText } from "../lib/browser.mjs";

const REPO = "acme/widget";

export default {
  name: "GitHub: sign in, prompt, open the pull request as yourself; a refused link explained",
  async run(t) {
    const gh = await t.fakeGitHub({
      repos: [`${REPO}:anonymous`],
      users: [{ login: "bob-gh", id: 102, name: "Bob Builder", email: "bob@example.com" }],
      signIn: "bob-gh",
    });
    const secret = join(mkdtempSync(join(tmpdir(), "canopy-e2e-gh-")), "client-secret");
    writeFileSync(secret, gh.clientSecret, { mode: 0o600 });
    const server = await t.server({ args: [...gh.serverArgs(secret), "--github-signup", "true"] });
    const alice = await server.owner();
    const created = await server.api(alice.token, "POST", "/features", {
      title: "Widget polish",
      description: "Small things, as pull requests.",
      repo: { url: gh.repos[REPO], base_branch: "main" },
    });
    const featureId = created.feature_id;
    const sessionId = await server.createSession(alice.token, featureId, "Greeting", "Add a greeting file.");
    t.step("fake GitHub, server, feature with a repository");

    // Bob follows a link to the feature, signed out: the sign-in page
    // offers GitHub; he comes back to the feature, as a new user.
    const B = await t.person(server, { handle: "bob-gh", name: "Bob Builder" }, { signedIn: false });
    await B.page.goto(`${server.url}/f/${featureId}`);
    const button = B.page.getByRole("link", { name: "Sign in with GitHub" });
    await button.waitFor({ timeout: 15_000 });
    await button.click();
    await waitText("Bob to be signed in", B.page.locator(".account-name"), (s) => s === "Bob Builder", T.sync);
    const url = new URL(B.page.url());
    assert(url.pathname === `/f/${featureId}`, `back on the feature, not ${url.pathname}`);
    assert(url.hash === "", `the token is gone from the address bar (${url.hash})`);
    t.step("Bob signed in with GitHub and is back on the feature");

    // Alice makes him a contributor; his page opens the feature.
    await server.setMember(alice.token, featureId, "bob-gh", "contributor");
    await B.gotoSession(featureId, sessionId);
    await B.waitOnline();
    await B.page.locator(".account-button").click();
    await waitText("Bob's menu to name his GitHub account", B.page.locator(".menu-github"), (s) => s.includes("@bob-gh"), T.ui);
    await B.page.keyboard.press("Escape");

    // His prompt runs: the sandbox clones with his token (the App is not
    // configured), then commits as him.
    const composer = B.page.locator(".composer textarea");
    await composer.fill("write hello.txt: hello from a browser");
    await composer.press("Enter");
    await waitText(
      "hello.txt in files changed",
      B.page.locator(".session-side .file-list .path").filter({ hasText: "hello.txt" }),
      (s) => s === "hello.txt",
      T.agent,
    );
    t.step("the prompt ran on a clone of the repository");

    // Open the pull request: as Bob, and the link is in the session.
    const open = B.page.getByRole("button", { name: "Open pull request" });
    await until("the running prompt to settle", async () => await open.isEnabled(), { timeout: T.agent });
    await open.click();
    await waitText("the pull request note", B.page.locator(".pr-note"), (s) => /Pull request #1 opened as @bob-gh/.test(s), T.agent);
    const link = B.page.locator(".session-side .facts a").filter({ hasText: "#1" });
    await link.waitFor({ timeout: ms(T.sync) });
    assert((await link.getAttribute("href")) === `${gh.webUrl}/${REPO}/pull/1`, "the document links the pull request");
    await B.page.getByRole("button", { name: "Update pull request" }).waitFor({ timeout: ms(T.ui) });
    const pulls = await gh.pulls(REPO);
    assert(pulls.length === 1 && pulls[0].user.login === "bob-gh", `one PR, by bob-gh: ${JSON.stringify(pulls.map((p) => p.user.login))}`);
    assert(pulls[0].body.includes("write hello.txt: hello from a browser"), "the body quotes the prompt");
    assert(pulls[0].body.includes(`/f/${featureId}/s/${sessionId}`), "the body links the session");
    t.step("pull request #1 opened as bob-gh, linked in the session");

    // Alice tries to link the GitHub account that is signed in at GitHub:
    // Bob's. Canopy refuses, and her page says why.
    const A = await t.person(server, alice);
    await A.page.locator(".account-button").click();
    await A.page.getByRole("button", { name: "Link your GitHub account" }).click();
    await waitText("Alice to be told the account is linked to someone else", A.page.locator(".notice-bad"), (s) => /already linked|linked to/i.test(s), T.sync);
    assert(new URL(A.page.url()).hash === "", "the error is gone from the address bar");
    t.step("a refused link is explained");
  },
};
