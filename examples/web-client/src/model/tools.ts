/**
 * Tool calls, summarised to one line: "bash  ls -la", "edit  src/auth.rs".
 */
import type { PartView } from "../doc/transcript";

const MAX_SUMMARY = 140;

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

function clip(s: string, max = MAX_SUMMARY): string {
  const chars = [...s];
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : s;
}

/** The tool's input as an object, or null when it is not a JSON object. */
export function parseToolInput(input: string | null): Record<string, unknown> | null {
  if (!input) return null;
  try {
    const v: unknown = JSON.parse(input);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const firstString = (obj: Record<string, unknown>, keys: readonly string[]): string | null => {
  for (const k of keys) {
    const v = obj[k];
    if (typeof v === "string" && v.trim()) return v;
  }
  return null;
};

const PATH_KEYS = ["filePath", "file_path", "path", "file"] as const;

/** The interesting argument of a call, by tool. */
export function toolArgument(tool: string, input: Record<string, unknown> | null): string {
  if (!input) return "";
  const name = tool.toLowerCase();
  let arg: string | null = null;
  if (name === "bash" || name === "shell") arg = firstString(input, ["command", "cmd", "description"]);
  else if (["read", "write", "edit", "multiedit", "patch", "list", "ls"].includes(name)) arg = firstString(input, PATH_KEYS);
  else if (name === "glob") arg = firstString(input, ["pattern"]);
  else if (name === "grep") {
    const pattern = firstString(input, ["pattern", "query"]);
    const where = firstString(input, ["path", "include"]);
    arg = pattern ? (where ? `${pattern} in ${where}` : pattern) : null;
  } else if (name === "webfetch" || name === "fetch") arg = firstString(input, ["url"]);
  else if (name === "task") arg = firstString(input, ["description", "prompt"]);
  else if (name === "todowrite" && Array.isArray(input.todos)) arg = `${input.todos.length} todo${input.todos.length === 1 ? "" : "s"}`;
  if (arg === null) {
    arg =
      firstString(input, [...PATH_KEYS, "command", "text", "title", "query", "pattern", "url", "description", "name"]) ??
      Object.values(input).find((v): v is string => typeof v === "string" && v.trim() !== "") ??
      "";
  }
  return clip(oneLine(arg));
}

export interface ToolSummary {
  tool: string;
  argument: string;
  /** `pending`, `running`, `completed`, `error`, or a newer value. */
  state: string;
  /** A short status word for people. */
  stateLabel: string;
  done: boolean;
  failed: boolean;
  /** The first line of the error, when it failed. */
  errorLine: string | null;
}

export function summarizeTool(part: PartView): ToolSummary {
  const tool = part.tool || "tool";
  const state = part.state || (part.error ? "error" : "pending");
  const failed = state === "error" || !!part.error;
  const done = state === "completed" || failed;
  const labels: Record<string, string> = {
    pending: "pending",
    running: "running",
    completed: "done",
    error: "failed",
  };
  return {
    tool,
    argument: toolArgument(tool, parseToolInput(part.input)),
    state,
    stateLabel: labels[state] ?? state,
    done,
    failed,
    errorLine: part.error ? clip(oneLine(part.error.split("\n")[0] ?? "")) : null,
  };
}

/** Pretty-printed input for the expanded view. */
export function formatToolInput(input: string | null): string {
  if (!input) return "";
  try {
    return JSON.stringify(JSON.parse(input), null, 2);
  } catch {
    return input;
  }
}
