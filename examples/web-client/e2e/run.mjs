#!/usr/bin/env node
/**
 * Canopy web client browser tests: real server (`canopy serve` with agents),
 * real Chromium, the client's production build.
 *
 *   node e2e/run.mjs              every scenario
 *   node e2e/run.mjs offline two  the scenarios whose file name contains a word
 *
 * Exits non-zero when any scenario fails. A scenario that cannot run (no
 * Chromium, no server binary, no build) fails; nothing is skipped.
 * Environment: see README.md, "Browser tests and measurements".
 */
import { FakeGitHub } from "./lib/github.mjs";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { E2E_DIR, config, missingPrerequisites, ms } from "./lib/env.mjs";
import { launchBrowser, Person } from "./lib/browser.mjs";
import { Server } from "./lib/server.mjs";

const SCENARIO_TIMEOUT = 8 * 60_000;
const scenarioDir = join(E2E_DIR, "scenarios");
const failureDir = join(E2E_DIR, "results", "failures");

const filters = process.argv.slice(2);
const files = readdirSync(scenarioDir)
  .filter((f) => f.endsWith(".mjs"))
  .sort()
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)));
if (files.length === 0) {
  console.error(`no scenario matches ${filters.join(", ")}`);
  process.exit(2);
}

/** What a scenario gets: servers and people it starts are cleaned up for it. */
class TestContext {
  servers = [];
  people = [];
  fakes = [];
  browser = null;
  log = [];
  constructor(name) {
    this.name = name;
  }
  step(message) {
    const line = `    · ${message}`;
    this.log.push(line);
    if (process.env.E2E_VERBOSE === "1") console.log(line);
  }
  async server(options) {
    const s = await Server.start({ label: this.name.replace(/\W+/g, "-").slice(0, 20), ...options });
    this.servers.push(s);
    return s;
  }
  /** The fake GitHub (lib/github.mjs), stopped after the scenario. */
  async fakeGitHub(options) {
    const g = await FakeGitHub.start(options);
    this.fakes.push(g);
    return g;
  }
  async person(server, user, options) {
    this.browser ??= await launchBrowser();
    const p = await Person.open(this.browser, server, user, options);
    this.people.push(p);
    return p;
  }
  async cleanup() {
    for (const p of this.people) await p.close();
    if (this.browser) await this.browser.close().catch(() => {});
    for (const s of this.servers) await s.stop().catch(() => {});
    for (const g of this.fakes) await g.stop().catch(() => {});
  }
  async saveFailureScreens(slug) {
    mkdirSync(failureDir, { recursive: true });
    const saved = [];
    for (const p of this.people) {
      const path = join(failureDir, `${slug}-${p.user.handle}.png`);
      try {
        await p.page.screenshot({ path, fullPage: true, timeout: 10_000 });
        saved.push(path);
      } catch {
        // the page is gone
      }
    }
    return saved;
  }
}

function withTimeout(promise, limit, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish in ${limit / 1000} s`)), limit);
    }),
  ]).finally(() => clearTimeout(timer));
}

rmSync(failureDir, { recursive: true, force: true });
const results = [];
const startedAll = Date.now();
console.log(`Canopy web client browser tests (${files.length} scenario${files.length === 1 ? "" : "s"})`);
console.log(`  server ${config.canopyBin}\n  sidecar ${config.sidecarBin}\n  chromium ${config.chromium}\n  web ${config.webDir}`);

for (const file of files) {
  const slug = file.replace(/\.mjs$/, "");
  const t = new TestContext(slug);
  const started = Date.now();
  let error = null;
  let mod = { name: slug };
  try {
    mod = (await import(pathToFileURL(join(scenarioDir, file)).href)).default;
  } catch (e) {
    error = new Error(`cannot load ${file}: ${e.stack ?? e}`);
  }
  const problems = error ? [] : missingPrerequisites({ needAgent: mod.needsAgents !== false });
  if (error) {
    // reported below
  } else if (problems.length) {
    error = new Error(`cannot run: ${problems.join("; ")}`);
  } else {
    try {
      await withTimeout(mod.run(t), ms(SCENARIO_TIMEOUT), "the scenario");
      const pageErrors = t.people.flatMap((p) => p.errors);
      if (pageErrors.length) throw new Error(`uncaught errors in the pages:\n      ${pageErrors.join("\n      ")}`);
    } catch (e) {
      error = e;
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (error) {
    const shots = await t.saveFailureScreens(slug);
    console.log(`✘ FAIL ${mod.name ?? slug} (${seconds} s)`);
    console.log(`    ${String(error.stack ?? error).split("\n").slice(0, 6).join("\n    ")}`);
    if (t.log.length) console.log(`  steps done:\n${t.log.slice(-12).join("\n")}`);
    for (const p of t.people) for (const c of p.console.slice(-8)) console.log(`    console ${c}`);
    for (const s of t.servers) {
      if (s.exitStatus) console.log(`  the server had exited: ${JSON.stringify(s.exitStatus)}`);
      const tail = s.logTail(15);
      if (tail) console.log(`  server log (${s.logPath}):\n      ${tail.split("\n").join("\n      ")}`);
    }
    if (shots.length) console.log(`  screenshots: ${shots.join(", ")}`);
  } else {
    console.log(`✔ PASS ${mod.name ?? slug} (${seconds} s)`);
  }
  await t.cleanup();
  if (config.keep) for (const s of t.servers) console.log(`  kept ${s.dataDir}`);
  results.push({ slug, ok: !error, seconds: Number(seconds) });
}

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`\nbrowser tests: ${((Date.now() - startedAll) / 1000).toFixed(1)} s in all`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
