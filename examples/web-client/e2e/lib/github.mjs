/**
 * The integration tests' fake GitHub (examples/fake-github, a process):
 * GitHub's OAuth web flow, REST shapes and `git http-backend` on
 * 127.0.0.1, so the client's GitHub paths run end to end.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { config, ms } from "./env.mjs";

export class FakeGitHub {
  /** @type {import("node:child_process").ChildProcess} */
  proc;
  webUrl = "";
  apiUrl = "";
  /** `owner/name` → clone URL. */
  repos = {};
  clientId = "";
  clientSecret = "";

  /**
   * @param {object} o
   * @param {string[]} [o.repos]  `owner/name`, `:anonymous` for anyone to read
   * @param {{login: string, id: number, name: string, email: string}[]} [o.users]
   * @param {string} [o.signIn]   whom GitHub's authorize page treats as signed in
   */
  static async start({ repos = [], users = [], signIn } = {}) {
    if (!existsSync(config.fakeGitHubBin)) {
      throw new Error(`no fake GitHub at ${config.fakeGitHubBin} (cargo build --example fake-github, or set CANOPY_FAKE_GITHUB_BIN)`);
    }
    const g = new FakeGitHub();
    g.clientId = "Iv1.e2eclient0001";
    g.clientSecret = "e2e-oauth-client-secret";
    const args = ["--client-id", g.clientId, "--client-secret", g.clientSecret];
    for (const r of repos) args.push("--repo", r);
    for (const u of users) args.push("--user", `${u.login}:${u.id}:${u.name}:${u.email}`);
    if (signIn) args.push("--sign-in", signIn);
    // Its standard input stays open: closing it stops the fake.
    g.proc = spawn(config.fakeGitHubBin, args, { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    g.proc.stderr.on("data", (c) => (err += c.toString()));
    const line = await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`the fake GitHub did not start in 30 s: ${err}`)), ms(30_000));
      g.proc.stdout.on("data", (c) => {
        out += c.toString();
        const nl = out.indexOf("\n");
        if (nl >= 0) {
          clearTimeout(timer);
          resolve(out.slice(0, nl));
        }
      });
      g.proc.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the fake GitHub exited (${code}): ${err}`));
      });
    });
    const info = JSON.parse(line);
    g.webUrl = info.web_url;
    g.apiUrl = info.api_url;
    g.repos = info.repos;
    return g;
  }

  /** The `canopy serve` flags for sign-in with GitHub against this fake
   * (`secretFile` holds the client secret). */
  serverArgs(secretFile) {
    return [
      "--github-web-url",
      this.webUrl,
      "--github-api-url",
      this.apiUrl,
      "--github-client-id",
      this.clientId,
      "--github-client-secret-file",
      secretFile,
    ];
  }

  /** `GET {api}/repos/{owner}/{name}/pulls` without a token (the
   * repository must be readable by anyone). */
  async pulls(fullName) {
    const res = await fetch(`${this.apiUrl}/repos/${fullName}/pulls?state=all`, { headers: { accept: "application/vnd.github+json" } });
    if (!res.ok) throw new Error(`fake GitHub: list pulls of ${fullName}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  async stop() {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.on("exit", r));
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(t);
  }
}
