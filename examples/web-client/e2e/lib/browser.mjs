/**
 * Chromium through playwright-core (Debian's /usr/bin/chromium, no browser
 * download), one browser context per person.
 */
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, E2E_DIR, T, assert, config, ms, until } from "./env.mjs";

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function launchBrowser() {
  return chromium.launch({
    executablePath: config.chromium,
    headless: !config.headful,
    args: CHROMIUM_ARGS,
    timeout: ms(60_000),
  });
}

/**
 * A person in their own browser context (own IndexedDB, localStorage,
 * service worker), signed in through the `#token=` link the server prints.
 * `errors` collects uncaught page errors; scenarios fail on them.
 */
export class Person {
  /** @type {import("playwright-core").BrowserContext} */ context;
  /** @type {import("playwright-core").Page} */ page;
  errors = [];
  console = [];

  constructor(name, user, server) {
    this.name = name;
    this.user = user;
    this.server = server;
  }

  /** `signedIn: false`: a fresh browser at the server's root (the sign-in
   * page); `user` then only names the person. */
  static async open(browser, server, user, { viewport = DESKTOP, name = user.name, isMobile = false, signedIn = true } = {}) {
    const p = new Person(name, user, server);
    p.context = await browser.newContext({ viewport, isMobile, hasTouch: isMobile, deviceScaleFactor: 1 });
    p.context.setDefaultTimeout(ms(T.ui));
    // Exposes the client's Connection as `window.canopy` (src/ui/App.tsx):
    // for reading the connection state and for forcing writes.
    await p.context.addInitScript(() => localStorage.setItem("canopy:debug", "1"));
    p.page = await p.context.newPage();
    p.#watch(p.page);
    if (!signedIn) return p;
    await p.page.goto(`${server.url}/#token=${encodeURIComponent(user.token)}`);
    await p.page.getByRole("heading", { name: "Features" }).waitFor({ timeout: ms(T.sync) });
    // The list has loaded (and is saved on this device).
    await p.page.locator(".feature-list, main .empty").first().waitFor({ timeout: ms(T.sync) });
    return p;
  }

  #watch(page) {
    page.on("pageerror", (e) => this.errors.push(`${this.name}: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") this.console.push(`${this.name} [${m.type()}] ${m.text()}`);
    });
  }

  async gotoFeature(featureId) {
    await this.page.goto(`${this.server.url}/f/${featureId}`);
    await this.page.locator(".dashboard h1").waitFor({ timeout: ms(T.sync) });
  }

  async gotoSession(featureId, sessionId) {
    await this.page.goto(`${this.server.url}/f/${featureId}/s/${sessionId}`);
    await this.page.locator(".composer textarea").waitFor({ timeout: ms(T.sync) });
  }

  /** The client's own connection state (`online`, `offline`, …). */
  async connectionStatus() {
    return this.page.evaluate(() => window.canopy?.state.status ?? "none");
  }

  async waitOnline(timeout = T.sync) {
    await until(`${this.name}'s page to be online`, async () => (await this.connectionStatus()) === "online", { timeout });
  }

  /** The number in the top bar's "N unsynced changes" (0 when hidden). */
  async unsyncedCount() {
    const text = (await this.page.locator(".unsynced").textContent()) ?? "";
    const m = /(\d+) unsynced change/.exec(text);
    return m ? Number(m[1]) : 0;
  }

  async close() {
    await this.context.close().catch(() => {});
  }
}

/** Wait until the text of `locator` (first match) satisfies `test`. */
export async function waitText(what, locator, test, timeout = T.sync) {
  return until(what, async () => {
    if ((await locator.count()) === 0) return false;
    const text = (await locator.first().innerText()).trim();
    return test(text) ? text || true : false;
  }, { timeout });
}

/** Horizontal overflow of the page: px the document is wider than the window. */
export async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const el = document.scrollingElement ?? document.documentElement;
    return Math.max(0, el.scrollWidth - el.clientWidth);
  });
}

/** Elements wider than the viewport or sticking out of it on the right
 * (CSS overflow that `overflow: hidden` ancestors might hide from scrollWidth). */
export async function elementsOutside(page) {
  return page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const out = [];
    for (const el of document.querySelectorAll("body *")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const style = getComputedStyle(el);
      if (style.visibility === "hidden" || style.position === "fixed") continue;
      // Clipped by a scrolling ancestor (e.g. a code block): fine.
      let clipped = false;
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const ov = getComputedStyle(p).overflowX;
        if (ov === "auto" || ov === "scroll" || ov === "hidden" || ov === "clip") {
          clipped = true;
          break;
        }
      }
      if (clipped) continue;
      if (r.right > w + 1 || r.left < -1) {
        const cls = typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\s+/).join(".") : "";
        out.push(`${el.tagName.toLowerCase()}${cls} [${Math.round(r.left)}–${Math.round(r.right)} of ${w}]`);
      }
    }
    return out.slice(0, 10);
  });
}

/** Save `e2e/screenshots/<name>.png`, after checking that nothing sticks out
 * sideways (the usual way a layout breaks at phone width). */
export async function shoot(t, page, name, { fullPage = false } = {}) {
  const overflow = await horizontalOverflow(page);
  assert(overflow === 0, `${name}: the page is ${overflow} px wider than the window`);
  const outside = await elementsOutside(page);
  assert(outside.length === 0, `${name}: elements outside the window: ${outside.join(", ")}`);
  await page.screenshot({ path: join(E2E_DIR, "screenshots", `${name}.png`), fullPage, animations: "disabled", caret: "hide" });
  t.step(`screenshot ${name}.png`);
}
