/**
 * A real `canopy serve` on a fresh data directory, serving the client's
 * build, with real agents (local sandboxes, OpenCode, the scripted model)
 * unless told otherwise; plus the users, features and REST calls the
 * scenarios need.
 */
import { spawn, execFile } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { config, ms, sleep } from "./env.mjs";

const execFileP = promisify(execFile);

/** The first user's token (`--bootstrap-token`; the format the server checks). */
export const OWNER_TOKEN = "canopy_e2etokenaaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
export const OWNER_HANDLE = "alice";

/** The server's environment: ours without model keys (agents must use the
 * offline scripted model) and without CANOPY_* settings (every flag that
 * matters is passed explicitly). */
function serverEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("CANOPY_") || k === "ANTHROPIC_API_KEY" || k === "OPENAI_API_KEY") continue;
    env[k] = v;
  }
  return { ...env, CANOPY_LOG: config.serverLog, NO_COLOR: "1", ...extra };
}

export class Server {
  /** @type {import("node:child_process").ChildProcess} */
  proc;
  url = "";
  dataDir = "";
  logPath = "";
  exited = false;
  /** `{ code, signal }` once the process has exited. */
  exitStatus = null;
  #exit;

  /**
   * @param {object} o
   * @param {string} o.label    name for the temp directory
   * @param {boolean} [o.dispatch]  run agents (default true)
   * @param {string[]} [o.args] more `canopy serve` flags
   */
  static async start({ label, dispatch = true, args = [] }) {
    const s = new Server();
    s.dataDir = mkdtempSync(join(tmpdir(), `canopy-e2e-${label}-`));
    s.logPath = join(s.dataDir, "server.log");
    const log = createWriteStream(s.logPath);
    const argv = [
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--data-dir",
      join(s.dataDir, "data"),
      "--web-dir",
      config.webDir,
      "--bootstrap-user",
      OWNER_HANDLE,
      "--bootstrap-token",
      OWNER_TOKEN,
      "--dispatch",
      String(dispatch),
      "--sandbox",
      "local",
      "--sidecar-bin",
      config.sidecarBin,
      "--opencode-bin",
      config.opencodeBin,
      // Faster SQLite commits on a busy disk; durability is not under test.
      "--sqlite-synchronous",
      "normal",
      ...args,
    ];
    s.proc = spawn(config.canopyBin, argv, { env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] });
    s.#exit = new Promise((resolve) =>
      s.proc.on("exit", (code, signal) => {
        s.exited = true;
        s.exitStatus = { code, signal };
        resolve({ code, signal });
      }),
    );
    let out = "";
    s.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server printed no URL in ${ms(30_000) / 1000} s; log: ${s.logPath}`)), ms(30_000));
      s.proc.stdout.on("data", (chunk) => {
        log.write(chunk);
        out += chunk.toString();
        const m = /Canopy listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      s.proc.stderr.on("data", (chunk) => log.write(chunk));
      s.proc.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      s.proc.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited (${code}) before it printed its URL; log: ${s.logPath}`));
      });
    });
    return s;
  }

  /** The last lines of the server's log (for failure reports). */
  logTail(lines = 40) {
    try {
      return readFileSync(this.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** SIGTERM, then SIGKILL if it does not exit. */
  async stop({ keep = config.keep } = {}) {
    if (!this.exited) {
      this.proc.kill("SIGTERM");
      const done = await Promise.race([this.#exit, sleep(20_000).then(() => null)]);
      if (!done) {
        this.proc.kill("SIGKILL");
        await this.#exit;
      }
    }
    if (!keep) rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** SIGKILL: the server is gone at once (an outage). */
  async kill() {
    if (this.exited) return;
    this.proc.kill("SIGKILL");
    await this.#exit;
  }

  // ------------------------------------------------------------ users

  /** `canopy user add` on the running server's data directory; returns
   * `{ handle, name, token, userId }`. */
  async addUser(handle, name) {
    const { stdout } = await execFileP(config.canopyBin, ["user", "add", handle, "--name", name, "--data-dir", join(this.dataDir, "data")], {
      env: serverEnv({ CANOPY_LOG: "error" }),
    });
    const tokens = stdout.match(/canopy_[A-Za-z0-9_-]{20,}/g);
    if (!tokens) throw new Error(`canopy user add ${handle}: no token in its output:\n${stdout}`);
    const token = tokens[tokens.length - 1];
    const me = await this.api(token, "GET", "/me");
    return { handle, name, token, userId: me.user_id };
  }

  async owner() {
    const me = await this.api(OWNER_TOKEN, "GET", "/me");
    return { handle: OWNER_HANDLE, name: me.display_name || OWNER_HANDLE, token: OWNER_TOKEN, userId: me.user_id };
  }

  // ------------------------------------------------------------ REST

  /** `/api` + path with a token; JSON in, JSON out; throws on an error status. */
  async api(token, method, path, body) {
    const res = await fetch(`${this.url}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} /api${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** A feature owned by `token`'s user: `{ featureId, docUrl }`. */
  async createFeature(token, title, description = "") {
    const r = await this.api(token, "POST", "/features", { title, description });
    return { featureId: r.feature_id, docUrl: r.doc_url };
  }

  async createSession(token, featureId, title, scope = "", dependsOn = []) {
    const r = await this.api(token, "POST", `/features/${featureId}/sessions`, { title, scope, depends_on: dependsOn });
    return r.session_id;
  }

  /** Give `user` (a handle) a role in a feature (as an owner). */
  async setMember(ownerToken, featureId, handle, role) {
    return this.api(ownerToken, "PUT", `/features/${featureId}/members/${handle}`, { role });
  }

  /** `GET /api/features/{id}`: `{ heads, document, … }`. */
  async snapshot(token, featureId) {
    return this.api(token, "GET", `/features/${featureId}`);
  }
}
