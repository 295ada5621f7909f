import { describe, expect, it } from "vitest";
import * as A from "@automerge/automerge/slim";
import type { Patch } from "@automerge/automerge/slim";
import { applyTextEdit, mapOffset, textEdit } from "./text";

describe("textEdit", () => {
  it("finds a single insertion, deletion or replacement", () => {
    expect(textEdit("hello world", "hello brave world")).toEqual({ index: 6, del: 0, insert: "brave " });
    expect(textEdit("hello brave world", "hello world")).toEqual({ index: 6, del: 6, insert: "" });
    expect(textEdit("color", "colour")).toEqual({ index: 4, del: 0, insert: "u" });
    expect(textEdit("abc", "axc")).toEqual({ index: 1, del: 1, insert: "x" });
    expect(textEdit("same", "same")).toBeNull();
  });

  it("uses the caret to place an edit inside a run of equal characters", () => {
    // Typing "a" at position 1 of "aa": the caret ends at 2.
    expect(textEdit("aa", "aaa", 2)).toEqual({ index: 1, del: 0, insert: "a" });
    // Without the caret the insertion lands at the end of the run.
    expect(textEdit("aa", "aaa")).toEqual({ index: 2, del: 0, insert: "a" });
    // Backspace at position 2 of "aaa" (deleting index 1): caret ends at 1.
    expect(textEdit("aaa", "aa", 1)).toEqual({ index: 1, del: 1, insert: "" });
  });

  it("never splits a surrogate pair", () => {
    const before = "a😀b";
    const after = "a😃b"; // same high surrogate, different low one
    const edit = textEdit(before, after)!;
    expect(edit).toEqual({ index: 1, del: 2, insert: "😃" });
    expect(applyTextEdit(before, edit)).toBe(after);
  });

  it("round-trips random edits", () => {
    const samples = ["", "x", "hello", "naïve café", "日本語テキスト", "🙂🙃🙂"];
    for (const a of samples) for (const b of samples) {
      const e = textEdit(a, b);
      expect(e === null ? a : applyTextEdit(a, e)).toBe(b);
    }
  });
});

describe("mapOffset", () => {
  const patchesOf = (before: A.Doc<{ notes: string }>, fn: (d: { notes: string }) => void): Patch[] => {
    let patches: Patch[] = [];
    A.change(A.clone(before), { patchCallback: (p) => (patches = p) }, fn);
    return patches;
  };
  const doc = A.from({ notes: "hello world" });

  it("moves a caret after text inserted before it, not after text inserted after it", () => {
    const insertBefore = patchesOf(doc, (d) => A.splice(d, ["notes"], 0, 0, ">> "));
    expect(mapOffset(6, insertBefore, ["notes"])).toBe(9);
    const insertAfter = patchesOf(doc, (d) => A.splice(d, ["notes"], 8, 0, "XYZ"));
    expect(mapOffset(6, insertAfter, ["notes"])).toBe(6);
    // Typing at exactly the caret: the caret stays before the remote text.
    const atCaret = patchesOf(doc, (d) => A.splice(d, ["notes"], 6, 0, "big "));
    expect(mapOffset(6, atCaret, ["notes"])).toBe(6);
  });

  it("pulls a caret back over deleted text and clamps it inside a deletion", () => {
    const del = patchesOf(doc, (d) => A.splice(d, ["notes"], 0, 6, ""));
    expect(mapOffset(8, del, ["notes"])).toBe(2);
    expect(mapOffset(3, del, ["notes"])).toBe(0);
  });

  it("ignores patches to other fields and gives up when the text is replaced", () => {
    const other = A.from({ notes: "hello", title: "t" });
    let patches: Patch[] = [];
    A.change(A.clone(other), { patchCallback: (p) => (patches = p) }, (d) => A.splice(d, ["title"], 0, 0, "new "));
    expect(mapOffset(3, patches, ["notes"])).toBe(3);
    const replaced = patchesOf(doc, (d) => (d.notes = "other"));
    expect(mapOffset(3, replaced, ["notes"])).toBeNull();
  });
});
