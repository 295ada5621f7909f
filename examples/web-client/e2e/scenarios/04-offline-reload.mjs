/**
 * Reload with no network and no server: a feature opened once online still
 * opens, from the service worker's app shell and the IndexedDB replica.
 */
import { T, assert, until } from "../lib/env.mjs";
import { waitText } from "../lib/browser.mjs";
import { appendNotes, learning, openDoc } from "../lib/seed.mjs";

const LEARNINGS = ["The cache serves the app shell", "IndexedDB keeps the documents", "Offline starts need no server"];

export default {
  name: "offline reload: the feature opens from the service worker and IndexedDB",
  needsAgents: false,
  async run(t) {
    const server = await t.server({ dispatch: false });
    const alice = await server.owner();
    const { featureId, docUrl } = await server.createFeature(alice.token, "Works on a plane", "Opened once, available always.");
    await server.createSession(alice.token, featureId, "cabin session");
    const seed = await openDoc(server, alice, docUrl);
    seed.change("seed", (d) => {
      for (const text of LEARNINGS) d.learnings.push(learning(alice.userId, text));
      appendNotes(d, "Seat 14C.");
    });
    await seed.serverHas("the learnings", featureId, (d) => d.learnings.length === LEARNINGS.length);
    await seed.close();

    const A = await t.person(server, alice);
    const page = A.page;
    // Open the feature as from a link: without the feature list this device
    // keeps (localStorage), so the feature's document URL comes from the
    // server and must be remembered for the offline start.
    await page.evaluate((userId) => localStorage.removeItem(`canopy:features:${userId}`), alice.userId);
    await A.gotoFeature(featureId);
    for (const text of LEARNINGS) await waitText(`the learning "${text}"`, page.locator(".know-text").filter({ hasText: text }), () => true);
    t.step("feature opened online");

    // The service worker is active, controls the page and has the shell.
    const shell = await until(
      "the service worker to control the page and cache the app shell",
      () =>
        page.evaluate(async () => {
          const reg = await navigator.serviceWorker.getRegistration();
          if (!reg?.active || !navigator.serviceWorker.controller) {
            const worker = reg ? (reg.installing ? "installing" : reg.waiting ? "waiting" : reg.active ? "active" : "none") : "unregistered";
            return { not: `worker ${worker}, controller ${navigator.serviceWorker.controller ? "set" : "none"}` };
          }
          const keys = (await (await caches.open("canopy-shell-v1")).keys()).map((r) => new URL(r.url).pathname);
          const scripts = [...document.querySelectorAll("script[src], link[rel=stylesheet]")].map((e) => new URL(e.src || e.href).pathname);
          const ok = keys.includes("/index.html") && scripts.every((s) => keys.includes(s)) && keys.some((k) => k.endsWith(".wasm"));
          return ok ? { keys } : { not: `cache has ${keys.join(", ") || "nothing"}` };
        }).then((r) => {
          // Thrown, so that a timeout says what was missing.
          if (r.not) throw new Error(r.not);
          return r.keys;
        }),
      { timeout: T.sync, interval: 250 },
    );
    t.step(`service worker caches ${shell.length} files`);

    // The document is in IndexedDB (saved at most 100 ms after it changed).
    const docId = docUrl.replace(/^automerge:/, "");
    await until("the document to be stored in IndexedDB", () =>
      page.evaluate(
        async ({ db, docId }) => {
          const conn = await new Promise((resolve, reject) => {
            const r = indexedDB.open(db);
            r.onsuccess = () => resolve(r.result);
            r.onerror = () => reject(r.error);
          });
          try {
            const keys = await new Promise((resolve, reject) => {
              const r = conn.transaction("documents").objectStore("documents").getAllKeys();
              r.onsuccess = () => resolve(r.result);
              r.onerror = () => reject(r.error);
            });
            // The document's own data, not only its sync state (which
            // automerge-repo writes first): [docId, "snapshot" | "incremental", hash].
            return keys.some((k) => Array.isArray(k) && k[0] === docId && (k[1] === "snapshot" || k[1] === "incremental"));
          } finally {
            conn.close();
          }
        },
        { db: `canopy:${alice.userId}`, docId },
      ),
    );

    // No network, and no server either.
    await A.context.setOffline(true);
    await server.kill();
    t.step("offline, server killed");
    await page.reload({ timeout: 30_000 });
    await waitText("the title after the offline reload", page.locator(".dashboard h1"), (s) => s === "Works on a plane", T.sync);
    for (const text of LEARNINGS) await waitText(`the learning "${text}" after the reload`, page.locator(".know-text").filter({ hasText: text }), () => true, T.ui);
    await until("the notes after the reload", async () => (await page.locator(".notes-text").inputValue()) === "Seat 14C.", { timeout: T.ui });
    await waitText("the session after the reload", page.locator(".session-title"), (s) => s === "cabin session", T.ui);
    await page.locator(".banner-offline").waitFor({ state: "visible", timeout: 15_000 });
    assert(await page.evaluate(() => !!navigator.serviceWorker.controller), "the reloaded page is served by the service worker");
    t.step("feature shown from IndexedDB after the reload");

  },
};
