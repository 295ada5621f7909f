import { describe, expect, it } from "vitest";
import type { PartView } from "../doc/transcript";
import { formatToolInput, summarizeTool } from "./tools";

const tool = (name: string, input: unknown, extra: Partial<PartView> = {}): PartView => ({
  id: "prt_1",
  type: "tool",
  text: null,
  tool: name,
  state: "completed",
  input: typeof input === "string" ? input : JSON.stringify(input),
  output: null,
  error: null,
  truncated: false,
  ...extra,
});

describe("summarizeTool", () => {
  it("picks the interesting argument per tool", () => {
    expect(summarizeTool(tool("bash", { command: "cargo test\n  --all", description: "run tests" })).argument).toBe("cargo test --all");
    expect(summarizeTool(tool("edit", { filePath: "src/auth.rs", oldString: "a", newString: "b" })).argument).toBe("src/auth.rs");
    expect(summarizeTool(tool("grep", { pattern: "fn main", path: "src" })).argument).toBe("fn main in src");
    expect(summarizeTool(tool("todowrite", { todos: [{}, {}] })).argument).toBe("2 todos");
    expect(summarizeTool(tool("canopy_add_learning", { text: "PKCE is required" })).argument).toBe("PKCE is required");
  });

  it("states status and the first line of an error", () => {
    const failed = summarizeTool(tool("bash", { command: "false" }, { state: "error", error: "exit 1\nstack…" }));
    expect(failed).toMatchObject({ failed: true, done: true, stateLabel: "failed", errorLine: "exit 1" });
    const running = summarizeTool(tool("bash", { command: "sleep 5" }, { state: "running" }));
    expect(running).toMatchObject({ done: false, failed: false, stateLabel: "running" });
    expect(summarizeTool(tool("x", "not json", { state: "new-state" }))).toMatchObject({ argument: "", stateLabel: "new-state" });
  });

  it("clips long arguments to one line", () => {
    const s = summarizeTool(tool("bash", { command: "echo " + "x".repeat(500) }));
    expect([...s.argument].length).toBeLessThanOrEqual(140);
    expect(s.argument.endsWith("…")).toBe(true);
  });

  it("pretty-prints JSON input and leaves other text alone", () => {
    expect(formatToolInput('{"a":1}')).toBe('{\n  "a": 1\n}');
    expect(formatToolInput("plain")).toBe("plain");
  });
});
