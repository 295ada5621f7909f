/**
 * The shared notes: a plain textarea whose every edit becomes one Automerge
 * splice (so two people typing at once both keep their words), and which
 * keeps the caret where it was when someone else's edit arrives (by moving
 * it through the patches of that change).
 *
 * The textarea is uncontrolled: React never rewrites its value, so a remote
 * edit cannot reset the caret. Remote text is written into it here, with the
 * selection mapped, and held back while an IME composition is under way.
 */
import { useEffect, useId, useRef } from "react";
import type { DocHandle, DocHandleChangePayload } from "@automerge/automerge-repo/slim";
import type { FeatureDoc } from "../schema";
import { spliceNotes } from "../doc/write";
import { mapOffset } from "../doc/text";
import { str } from "../doc/values";

export function NotesEditor({ handle, readOnly, onError }: { handle: DocHandle<FeatureDoc>; readOnly: boolean; onError: (e: unknown) => void }) {
  const ref = useRef<HTMLTextAreaElement>(null);
  /** The text the textarea shows, as the document had it. */
  const shown = useRef<string>("");
  const composing = useRef(false);
  const id = useId();

  // Initial value, then remote changes.
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const initial = str(handle.doc()?.notes);
    el.value = initial;
    shown.current = initial;

    const sync = (payload?: DocHandleChangePayload<FeatureDoc>) => {
      if (composing.current) return; // applied at compositionend
      const text = str(handle.doc()?.notes);
      if (text === el.value) {
        shown.current = text;
        return;
      }
      const focused = document.activeElement === el;
      let start = el.selectionStart;
      let end = el.selectionEnd;
      const dir = el.selectionDirection;
      if (payload) {
        const s = mapOffset(start, payload.patches, ["notes"]);
        const e = mapOffset(end, payload.patches, ["notes"]);
        start = s ?? Math.min(start, text.length);
        end = e ?? Math.min(end, text.length);
      }
      const scrollTop = el.scrollTop;
      el.value = text;
      shown.current = text;
      if (focused) el.setSelectionRange(start, end, dir ?? undefined);
      el.scrollTop = scrollTop;
    };
    const onChange = (payload: DocHandleChangePayload<FeatureDoc>) => sync(payload);
    handle.on("change", onChange);
    const onCompositionEnd = () => {
      composing.current = false;
      commit();
      sync();
    };
    const onCompositionStart = () => {
      composing.current = true;
    };
    el.addEventListener("compositionstart", onCompositionStart);
    el.addEventListener("compositionend", onCompositionEnd);
    return () => {
      handle.off("change", onChange);
      el.removeEventListener("compositionstart", onCompositionStart);
      el.removeEventListener("compositionend", onCompositionEnd);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [handle]);

  function commit() {
    const el = ref.current;
    if (!el || readOnly) return;
    const before = shown.current;
    const after = el.value;
    if (before === after) return;
    try {
      handle.change((d) => void spliceNotes(d, before, after, el.selectionEnd), { message: "edit notes" });
      shown.current = after;
    } catch (e) {
      onError(e);
    }
  }

  return (
    <div className="notes">
      <label htmlFor={id} className="sr-only">
        Shared notes
      </label>
      <textarea
        id={id}
        ref={ref}
        className="notes-text"
        placeholder={readOnly ? "No notes yet." : "Shared notes: plans, open questions, links… Everyone sees edits as they happen."}
        readOnly={readOnly}
        onInput={() => {
          if (!composing.current) commit();
        }}
        spellCheck
      />
    </div>
  );
}
