#!/usr/bin/env node
/**
 * Browser measurements of the web client (reported, not asserted):
 *
 *  (a) time to interactive of a feature dashboard with 1,000 learnings and
 *      200 queue entries: cold (fresh browser context: empty IndexedDB, no
 *      service worker, empty HTTP cache) and warm (reload: IndexedDB replica,
 *      service-worker shell), BENCH_RUNS times each;
 *  (b) frame times of the session view while ~50 chunks/s of agent output
 *      stream in (ephemeral `agent_output` deltas), with an idle baseline
 *      measured the same way on the same page just before.
 *
 *   node e2e/bench.mjs      (npm run bench)
 *
 * Prints markdown tables; writes e2e/results/bench.json.
 * Environment: as the browser tests (README.md), plus BENCH_RUNS (5),
 * BENCH_LEARNINGS (1000), BENCH_QUEUE (200), BENCH_RATE (50 chunks/s),
 * BENCH_SECONDS (10), BENCH_ONLY (tti | stream).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { E2E_DIR, config, missingPrerequisites, sleep, until } from "./lib/env.mjs";
import { DESKTOP, launchBrowser } from "./lib/browser.mjs";
import { Server } from "./lib/server.mjs";
import { learning, openDoc, queueEntry } from "./lib/seed.mjs";
import { startRateModel } from "./lib/model.mjs";

const env = process.env;
const RUNS = Number(env.BENCH_RUNS || 5);
const LEARNINGS = Number(env.BENCH_LEARNINGS || 1000);
const QUEUE = Number(env.BENCH_QUEUE || 200);
const RATE = Number(env.BENCH_RATE || 50);
const SECONDS = Number(env.BENCH_SECONDS || 10);
const ONLY = env.BENCH_ONLY || "";
/** No long task for this long after the content shows: the page is idle. */
const QUIET_MS = 2000;

const problems = missingPrerequisites({ needAgent: ONLY !== "tti" });
if (problems.length) {
  console.error(`cannot run the measurements: ${problems.join("; ")}`);
  process.exit(1);
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] : NaN);
  return { n: s.length, median: q(0.5), min: s[0], max: s[s.length - 1], p50: q(0.5), p95: q(0.95), p99: q(0.99) };
};
const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toString() : "–");
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "–");

const results = {
  when: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg_at_start: os.loadavg(), node: process.version },
  chromium: config.chromium,
  server: config.canopyBin,
  params: { runs: RUNS, learnings: LEARNINGS, queue: QUEUE, rate_per_s: RATE, seconds: SECONDS, quiet_ms: QUIET_MS },
};

const browser = await launchBrowser();
results.chromium_version = browser.version();
const servers = [];
let model = null;

try {
  if (ONLY !== "stream") await timeToInteractive();
  if (ONLY !== "tti") await frameTimes();
} finally {
  await browser.close().catch(() => {});
  for (const s of servers) await s.stop();
  if (model) await model.close();
}

mkdirSync(join(E2E_DIR, "results"), { recursive: true });
const out = join(E2E_DIR, "results", "bench.json");
writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
console.log(`\nwrote ${out}`);

// ---------------------------------------------------------------- (a)

/** Runs in the page before its own scripts: notes when the dashboard shows
 * the expected counts (and the frame after), and every long task. */
function measureScript({ learnings, queue, token, me }) {
  localStorage.setItem("canopy:token", JSON.stringify(token));
  localStorage.setItem("canopy:me", JSON.stringify(me));
  const b = (window.__bench = { domAt: null, shownAt: null, longTasks: [] });
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) b.longTasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch {
    // no long task timing
  }
  const count = (el) => Number(el?.querySelector(".count")?.textContent ?? NaN);
  const check = () => {
    if (b.domAt !== null) return;
    const tab = [...document.querySelectorAll("[role=tab]")].find((t) => t.textContent?.startsWith("Learnings"));
    const queueHead = [...document.querySelectorAll(".card-head h2")].find((h) => h.textContent?.startsWith("Queue"));
    if (count(tab) === learnings && count(queueHead) === queue && document.querySelector(".know-item") && document.querySelector(".queue-row")) {
      b.domAt = performance.now();
      requestAnimationFrame(() => setTimeout(() => (b.shownAt = performance.now()), 0));
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, characterData: true });
}

async function collect(page) {
  await until("the dashboard to show every learning and queue entry", () => page.evaluate(() => window.__bench?.shownAt ?? null), {
    timeout: 180_000,
    interval: 50,
  });
  // Idle: no long task for QUIET_MS after the content showed.
  const r = await until(
    "the main thread to go quiet",
    () =>
      page.evaluate((quiet) => {
        const b = window.__bench;
        const now = performance.now();
        const lastEnd = Math.max(0, ...b.longTasks.map(([s, d]) => s + d));
        if (now - Math.max(b.shownAt, lastEnd) < quiet) return null;
        const nav = performance.getEntriesByType("navigation")[0];
        const fcp = performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN;
        return {
          fcp,
          dcl: nav?.domContentLoadedEventEnd ?? NaN,
          shown: b.shownAt,
          tti: Math.max(b.shownAt, lastEnd),
          longTasks: b.longTasks.length,
          longTaskMs: b.longTasks.reduce((n, [, d]) => n + d, 0),
          maxLongTask: Math.max(0, ...b.longTasks.map(([, d]) => d)),
          fromServiceWorker: !!navigator.serviceWorker?.controller,
        };
      }, QUIET_MS),
    { timeout: 180_000, interval: 250 },
  );
  return r;
}

async function timeToInteractive() {
  console.log(`\n## (a) Time to interactive: dashboard with ${LEARNINGS} learnings and ${QUEUE} queue entries\n`);
  const server = await Server.start({ label: "bench-tti", dispatch: false, args: ["--max-queued-per-user", "10000", "--api-rate-per-minute", "100000"] });
  servers.push(server);
  const alice = await server.owner();
  const me = await server.api(alice.token, "GET", "/me");
  const { featureId, docUrl } = await server.createFeature(alice.token, "A big feature", "1,000 learnings, 200 prompts waiting.");
  const sessions = [];
  for (const title of ["backend", "frontend", "migrations", "docs"]) sessions.push(await server.createSession(alice.token, featureId, title));
  const seedStarted = Date.now();
  const seed = await openDoc(server, alice, docUrl);
  // One change per item, as people and agents add them.
  for (let i = 0; i < LEARNINGS; i++) {
    seed.change("add a learning", (d) =>
      d.learnings.push(
        learning(alice.userId, `Learning ${i + 1}: ${["the cache key includes the tenant", "retries back off to 10 s", "tests use a fixed clock", "the API returns ISO dates"][i % 4]}.`, {
          importance: ["low", "medium", "high"][i % 3],
          files: i % 5 === 0 ? [`src/module_${i % 17}.rs`] : [],
          at: Date.now() - (LEARNINGS - i) * 60_000,
        }),
      ),
    );
    if (i % 100 === 99) await sleep(20);
  }
  for (let i = 0; i < QUEUE; i++) seed.change("queue a prompt", (d) => d.queue.push(queueEntry(alice.userId, sessions[i % sessions.length], `Prompt ${i + 1}: please look at item ${i}.`)));
  await seed.serverHas("every learning and queue entry", featureId, (d) => d.learnings.length === LEARNINGS && d.queue.length === QUEUE, 180_000);
  await seed.close();
  const snap = await server.snapshot(alice.token, featureId);
  const docBytes = JSON.stringify(snap.document).length;
  console.log(`seeded in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s (${LEARNINGS + QUEUE} changes; JSON snapshot ${(docBytes / 1024).toFixed(0)} KiB)\n`);
  const url = `${server.url}/f/${featureId}`;
  const arg = { learnings: LEARNINGS, queue: QUEUE, token: alice.token, me };

  const cold = [];
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addInitScript(measureScript, arg);
    const page = await context.newPage();
    await page.goto(url, { waitUntil: "commit" });
    cold.push(await collect(page));
    await context.close();
  }
  const warm = [];
  {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addInitScript(measureScript, arg);
    const page = await context.newPage();
    await page.goto(url, { waitUntil: "commit" });
    await collect(page); // fills IndexedDB, installs the service worker
    await until("the service worker to control the page", () => page.evaluate(() => !!navigator.serviceWorker.controller), { timeout: 30_000 });
    await sleep(2000); // let IndexedDB writes settle
    for (let i = 0; i < RUNS; i++) {
      await page.reload({ waitUntil: "commit" });
      warm.push(await collect(page));
    }
    await context.close();
  }
  const row = (label, xs, key) => {
    const s = stats(xs.map((x) => x[key]));
    return `| ${label} | ${f0(s.median)} | ${f0(s.min)} | ${f0(s.max)} |`;
  };
  console.log(`| ms after navigation start (${RUNS} runs) | median | min | max |`);
  console.log("|---|---:|---:|---:|");
  for (const [name, xs] of [
    ["cold", cold],
    ["warm", warm],
  ]) {
    console.log(row(`${name}: first contentful paint`, xs, "fcp"));
    console.log(row(`${name}: content shown (${LEARNINGS} learnings and ${QUEUE} queue entries counted and rendered)`, xs, "shown"));
    console.log(row(`${name}: **interactive** (shown, then ${QUIET_MS / 1000} s without a long task)`, xs, "tti"));
    console.log(row(`${name}: long tasks (count)`, xs, "longTasks"));
    console.log(row(`${name}: long-task time (ms)`, xs, "longTaskMs"));
    console.log(row(`${name}: longest task (ms)`, xs, "maxLongTask"));
  }
  results.tti = {
    learnings: LEARNINGS,
    queue: QUEUE,
    snapshot_json_bytes: docBytes,
    cold: { runs: cold, tti: stats(cold.map((x) => x.tti)), shown: stats(cold.map((x) => x.shown)) },
    warm: { runs: warm, tti: stats(warm.map((x) => x.tti)), shown: stats(warm.map((x) => x.shown)), from_service_worker: warm.every((x) => x.fromServiceWorker) },
  };
}

// ---------------------------------------------------------------- (b)

/** Runs in the page: rAF deltas, long tasks, and the agent_output messages
 * that arrive on the session's transcript, for `ms`. */
function sampleFrames({ ms, sessionId }) {
  return new Promise((resolve) => {
    const deltas = [];
    const longTasks = [];
    let outputs = 0;
    let obs = null;
    try {
      obs = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) longTasks.push(e.duration);
      });
      obs.observe({ type: "longtask" });
    } catch {
      // no long task timing
    }
    const handles = Object.values(window.canopy.repo.handles).filter((h) => {
      try {
        return h.isReady() && String(h.doc()?.session_id ?? "") === sessionId && Array.isArray(h.doc()?.messages);
      } catch {
        return false;
      }
    });
    const onEphemeral = ({ message }) => {
      if (message?.type === "agent_output") outputs++;
    };
    for (const h of handles) h.on("ephemeral-message", onEphemeral);
    const textNow = () => document.querySelector(".transcript")?.textContent?.length ?? 0;
    const text0 = textNow();
    let last;
    const t0 = performance.now();
    const tick = (t) => {
      if (last !== undefined) deltas.push(t - last);
      last = t;
      if (t - t0 < ms) requestAnimationFrame(tick);
      else {
        obs?.disconnect();
        for (const h of handles) h.off("ephemeral-message", onEphemeral);
        resolve({ deltas, longTasks, outputs, transcriptHandles: handles.length, chars: textNow() - text0, seconds: (t - t0) / 1000 });
      }
    };
    requestAnimationFrame(tick);
  });
}

function frameRow(label, r) {
  const s = stats(r.deltas);
  const lt = r.longTasks;
  return `| ${label} | ${r.deltas.length} | ${f1(s.p50)} | ${f1(s.p95)} | ${f1(s.p99)} | ${f1(s.max)} | ${r.deltas.filter((d) => d > 50).length} | ${lt.length} | ${f0(lt.reduce((a, b) => a + b, 0))} | ${f1(r.outputs / r.seconds)} | ${f0(r.chars / r.seconds)} |`;
}

async function frameTimes() {
  console.log(`\n## (b) Frame times while ${RATE} chunks/s stream into the session view (${SECONDS} s)\n`);
  model = await startRateModel();
  const server = await Server.start({ label: "bench-stream", dispatch: true, args: ["--model-url", model.url] });
  servers.push(server);
  const alice = await server.owner();
  const me = await server.api(alice.token, "GET", "/me");
  const { featureId } = await server.createFeature(alice.token, "Streaming", "Frame times under a token stream.");
  const sessionId = await server.createSession(alice.token, featureId, "stream");
  const context = await browser.newContext({ viewport: DESKTOP });
  await context.addInitScript(
    ({ token, me }) => {
      localStorage.setItem("canopy:token", JSON.stringify(token));
      localStorage.setItem("canopy:me", JSON.stringify(me));
      localStorage.setItem("canopy:debug", "1");
    },
    { token: alice.token, me },
  );
  const page = await context.newPage();
  await page.goto(`${server.url}/f/${featureId}/s/${sessionId}`);
  const composer = page.locator(".composer textarea");
  await composer.waitFor({ timeout: 60_000 });
  // Warm up: the sandbox starts and the transcript exists before measuring.
  await composer.fill("hello");
  await composer.press("Enter");
  await page.locator(".msg-agent .part-text", { hasText: "OK." }).first().waitFor({ timeout: 180_000 });
  // …and the run's commit is recorded (the session leaves `running`).
  await until(
    "the warm-up run to finish",
    async () => {
      const d = (await server.snapshot(alice.token, featureId)).document;
      return d.queue[0]?.status === "done" && d.sessions[sessionId]?.status !== "running";
    },
    { timeout: 60_000 },
  );
  await sleep(2000);

  const idle = await page.evaluate(sampleFrames, { ms: SECONDS * 1000, sessionId });
  // Enough chunks to outlast the sample window, with margin.
  const chunks = Math.ceil(RATE * (SECONDS + 6));
  await composer.fill(`rate ${RATE} ${chunks}: Streaming for the frame-time measurement.`);
  await composer.press("Enter");
  await page.locator(".msg-agent.is-streaming .part-text", { hasText: "Streaming for the frame-time" }).waitFor({ timeout: 120_000 });
  await sleep(500);
  const busy = await page.evaluate(sampleFrames, { ms: SECONDS * 1000, sessionId });
  const stillStreaming = await page.locator(".msg-agent.is-streaming").count();
  await context.close();

  console.log("| session view | frames | p50 ms | p95 ms | p99 ms | max ms | frames > 50 ms | long tasks | long-task ms | agent_output msgs/s received | transcript chars/s |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  console.log(frameRow("idle (same page, just before)", idle));
  console.log(frameRow(`streaming (model sends ${RATE} chunks/s)`, busy));
  if (!stillStreaming) console.log("\n(note: the stream ended before the sample window did)");
  const summarize = (r) => ({ ...stats(r.deltas), frames: r.deltas.length, frames_over_50ms: r.deltas.filter((d) => d > 50).length, long_tasks: r.longTasks.length, long_task_ms: r.longTasks.reduce((a, b) => a + b, 0), agent_output_per_s: r.outputs / r.seconds, chars_per_s: r.chars / r.seconds, seconds: r.seconds });
  results.frames = { rate_per_s: RATE, chunks, idle: summarize(idle), streaming: summarize(busy), streaming_lasted_whole_window: stillStreaming > 0, transcript_handles_watched: busy.transcriptHandles };
}
