/**
 * Where things are, and the knobs (environment variables) of the browser
 * tests and measurements. See README.md, "Browser tests and measurements".
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const E2E_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const CLIENT_DIR = dirname(E2E_DIR);
export const REPO_ROOT = resolve(CLIENT_DIR, "../..");

const env = process.env;
/** Cargo's output directory: `CARGO_TARGET_DIR` when set, as cargo does. */
const TARGET_DIR = env.CARGO_TARGET_DIR ? resolve(env.CARGO_TARGET_DIR) : join(REPO_ROOT, "target");

export const config = {
  /** The server binary (`cargo build --bin canopy`). */
  canopyBin: env.CANOPY_BIN || join(TARGET_DIR, "debug/canopy"),
  /** The sandbox sidecar (`cargo build -p canopy-sidecar`). */
  sidecarBin: env.CANOPY_SIDECAR_BIN || join(TARGET_DIR, "debug/canopy-sidecar"),
  /** The integration tests' fake GitHub as a process (`cargo build --example fake-github`). */
  fakeGitHubBin: env.CANOPY_FAKE_GITHUB_BIN || join(TARGET_DIR, "debug/examples/fake-github"),
  /** OpenCode (`make opencode`). */
  opencodeBin: env.CANOPY_OPENCODE_BIN || join(REPO_ROOT, "sandbox/opencode/node_modules/.bin/opencode"),
  /** The client's build the server serves at `/` (`npm run build`). */
  webDir: env.E2E_WEB_DIR || join(CLIENT_DIR, "dist"),
  /** Chromium (Debian's `chromium` package). */
  chromium: env.CHROMIUM_BIN || "/usr/bin/chromium",
  /** Multiplies every timeout (a slow or busy machine: 2, 3 …). */
  timeoutScale: Number(env.E2E_TIMEOUT_SCALE || "1") || 1,
  /** Keep the servers' data directories and logs (printed at the end). */
  keep: env.E2E_KEEP === "1",
  /** Show the browser (needs a display). */
  headful: env.E2E_HEADFUL === "1",
  /** Server log filter. */
  serverLog: env.E2E_SERVER_LOG || "warn",
};

/** Flags that work for headless Chromium on the project machines
 * (/work/shared/notes/machine.md). */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** Standard waits, in ms, before `timeoutScale`. Generous: the machines
 * have 2 cores and are shared; a wait that runs out is a failure. */
export const T = {
  /** Something local to the page (a click, a render). */
  ui: 15_000,
  /** A change travelling page → server → other page. */
  sync: 30_000,
  /** An agent run: sandbox start (OpenCode boots), prompt, answer, commit. */
  agent: 150_000,
};

export function ms(t) {
  return Math.round(t * config.timeoutScale);
}

/** What must exist before anything runs; returns a list of problems. */
export function missingPrerequisites({ needAgent = true } = {}) {
  const problems = [];
  if (!existsSync(config.canopyBin)) problems.push(`no server binary at ${config.canopyBin} (cargo build --bin canopy, or set CANOPY_BIN)`);
  if (needAgent && !existsSync(config.sidecarBin))
    problems.push(`no sidecar binary at ${config.sidecarBin} (cargo build -p canopy-sidecar, or set CANOPY_SIDECAR_BIN)`);
  if (needAgent && !existsSync(config.opencodeBin)) problems.push(`no OpenCode at ${config.opencodeBin} (make opencode, or set CANOPY_OPENCODE_BIN)`);
  if (!existsSync(join(config.webDir, "index.html"))) problems.push(`no client build at ${config.webDir} (npm run build)`);
  if (!existsSync(config.chromium)) problems.push(`no Chromium at ${config.chromium} (apt-get install -y chromium, or set CHROMIUM_BIN)`);
  return problems;
}

export const sleep = (t) => new Promise((r) => setTimeout(r, t));

/**
 * Poll `check` until it returns something truthy (which is returned), or
 * throw after `timeout` ms (scaled). `check` may throw: that counts as "not
 * yet", and the last error is reported on timeout.
 */
export async function until(what, check, { timeout = T.sync, interval = 100 } = {}) {
  const limit = ms(timeout);
  const deadline = Date.now() + limit;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last ? ` (last error: ${String(last.message ?? last).split("\n")[0]})` : "";
      throw new Error(`timed out after ${(limit / 1000).toFixed(0)} s waiting for ${what}${why}`);
    }
    await sleep(interval);
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
