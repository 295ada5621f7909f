/**
 * Collaborative text editing: turn a textarea edit into one Automerge
 * splice, and move a caret through the patches of a remote edit.
 *
 * Positions are JS string indexes (UTF-16 code units), as in JS Automerge
 * (sync-protocol/README.md §6.8).
 */
import type { Patch, Prop } from "@automerge/automerge/slim";

export interface TextEdit {
  /** Where the edit starts, in `before`. */
  index: number;
  /** How many code units of `before` it removes. */
  del: number;
  /** What it inserts. */
  insert: string;
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The single edit that turns `before` into `after`: the longest common prefix
 * and suffix are kept. `caretAfter` (the textarea's `selectionEnd` after the
 * edit) resolves ambiguous cases such as typing "a" in "aa": without it the
 * insertion would be placed at the end of the run, with it at the caret,
 * which matters when someone else edits the same spot at the same time.
 * Never splits a surrogate pair.
 */
export function textEdit(before: string, after: string, caretAfter?: number): TextEdit | null {
  if (before === after) return null;
  let maxStart = Math.min(before.length, after.length);
  if (caretAfter !== undefined && Number.isInteger(caretAfter) && caretAfter >= 0 && caretAfter <= after.length) {
    const grown = after.length - before.length;
    const bound = grown > 0 ? caretAfter - grown : caretAfter;
    if (bound >= 0) maxStart = Math.min(maxStart, bound);
  }
  let start = 0;
  while (start < maxStart && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--;

  let endB = before.length;
  let endA = after.length;
  while (endB > start && endA > start && before.charCodeAt(endB - 1) === after.charCodeAt(endA - 1)) {
    endB--;
    endA--;
  }
  if (endB < before.length && isLow(before.charCodeAt(endB))) {
    // The kept suffix would start with half a pair: take the pair into the edit.
    endB++;
    endA++;
  }
  return { index: start, del: endB - start, insert: after.slice(start, endA) };
}

/** Apply an edit to a string (what Automerge's splice does to the text). */
export function applyTextEdit(text: string, edit: TextEdit): string {
  return text.slice(0, edit.index) + edit.insert + text.slice(edit.index + edit.del);
}

function isPathTo(path: readonly Prop[], textPath: readonly Prop[]): boolean {
  if (path.length !== textPath.length + 1) return false;
  return textPath.every((p, i) => p === path[i]);
}

function samePath(path: readonly Prop[], textPath: readonly Prop[]): boolean {
  return path.length === textPath.length && textPath.every((p, i) => p === path[i]);
}

/**
 * Where a caret at `offset` in the text at `textPath` ends up after `patches`
 * (from a DocHandle `change` event) are applied. Text inserted exactly at the
 * caret goes after it, so the caret does not move when someone types at the
 * same spot. Returns `null` when the text was replaced as a whole.
 */
export function mapOffset(offset: number, patches: readonly Patch[], textPath: readonly Prop[]): number | null {
  let pos = offset;
  for (const patch of patches) {
    if (samePath(patch.path, textPath) && patch.action === "put") return null;
    if (!isPathTo(patch.path, textPath)) continue;
    const at = patch.path[patch.path.length - 1];
    if (typeof at !== "number") continue;
    if (patch.action === "splice") {
      if (at < pos) pos += patch.value.length;
    } else if (patch.action === "del") {
      const n = patch.length ?? 1;
      if (at < pos) pos -= Math.min(n, pos - at);
    }
  }
  return pos;
}
