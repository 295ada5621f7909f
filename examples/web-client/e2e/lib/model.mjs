/**
 * A tiny OpenAI-compatible model for the measurements, streaming at a chosen
 * rate (the server's built-in scripted model streams `slow` answers at a
 * fixed 5 chunks/s). Start it and pass its URL as `canopy serve --model-url`.
 *
 *   rate <chunks per second> <chunks>: <text>   streams <text>, then " w1",
 *                                               " w2" … one chunk per tick
 *   anything else                               answers "OK."
 *
 * OpenCode's title request (no tools, a system text about a title) gets a
 * short title.
 */
import { createServer } from "node:http";

function textOf(message) {
  const c = message?.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => p?.text ?? "").join("\n");
  return "";
}

export async function startRateModel() {
  let next = 1;
  const server = createServer(async (req, res) => {
    if (req.method === "GET" && req.url?.startsWith("/v1/models")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "canopy-bench", object: "model", created: 0, owned_by: "canopy" }] }));
      return;
    }
    if (req.method !== "POST" || !req.url?.startsWith("/v1/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    let body = "";
    for await (const chunk of req) body += chunk;
    let request;
    try {
      request = JSON.parse(body);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const messages = Array.isArray(request.messages) ? request.messages : [];
    const hasTools = Array.isArray(request.tools) && request.tools.length > 0;
    const system = messages.filter((m) => m.role === "system").map(textOf).join("\n");
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    const prompt = textOf(lastUser).trim();
    const model = request.model ?? "canopy-bench";
    const id = `chatcmpl-bench-${next++}`;
    let chunks = ["OK."];
    let interval = 0;
    if (!hasTools && system.toLowerCase().includes("title")) {
      chunks = [prompt.split("\n")[0].slice(0, 40) || "Bench"];
    } else {
      const m = /^rate\s+(\d+)\s+(\d+):\s*([\s\S]*)$/.exec(prompt);
      if (m) {
        const rate = Math.max(1, Number(m[1]));
        const n = Math.max(1, Number(m[2]));
        interval = 1000 / rate;
        chunks = [m[3].trim() || "Streaming"];
        for (let i = 1; i < n; i++) chunks.push(` w${i}`);
      }
    }
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta, finish = null) => ({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: finish }] });
    const usage = { prompt_tokens: 10, completion_tokens: chunks.length, total_tokens: 10 + chunks.length };
    if (request.stream !== true) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: chunks.join("") }, finish_reason: "stop" }],
          usage,
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const send = (value) => res.write(`data: ${typeof value === "string" ? value : JSON.stringify(value)}\n\n`);
    const start = Date.now();
    let closed = false;
    res.on("close", () => (closed = true));
    for (let i = 0; i < chunks.length && !closed; i++) {
      // Absolute schedule: no drift from timer lateness.
      const due = start + i * interval;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      send(chunk(i === 0 ? { role: "assistant", content: chunks[i] } : { content: chunks[i] }));
    }
    if (closed) return;
    send({ ...chunk({}, "stop"), usage });
    send("[DONE]");
    res.end();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
