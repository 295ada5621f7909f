/** Small shared pieces. */
import { useEffect, useId, useRef, useState } from "react";
import type { ReactNode } from "react";
import { absoluteTime, hueOf, initials, relativeTime } from "../model/format";
import type { Tone } from "../model/feature";
import type { PresenceState } from "../model/presence";

export function Avatar({ id, name, state, size = "md", label }: { id: string; name: string; state?: PresenceState; size?: "sm" | "md"; label?: string }) {
  const text = label ?? name;
  return (
    <span className={`avatar avatar-${size}`} style={{ ["--hue" as string]: hueOf(id) }} title={state ? `${text} · ${state}` : text} aria-label={state ? `${text}, ${state}` : text} role="img">
      {initials(name)}
      {state && <span className={`presence-dot presence-${state}`} aria-hidden="true" />}
    </span>
  );
}

export function Chip({ tone = "neutral", children, title }: { tone?: Tone; children: ReactNode; title?: string }) {
  return (
    <span className={`chip chip-${tone}`} title={title}>
      {children}
    </span>
  );
}

/** A learning's text, led by its importance unless that is the usual one. */
export function LearningText({ importance, text }: { importance: string; text: string }) {
  return (
    <p className="know-text">
      {importance !== "medium" && (
        <>
          <Chip tone={importance === "high" ? "warn" : "neutral"}>{importance}</Chip>{" "}
        </>
      )}
      {text}
    </p>
  );
}

export function Time({ ms, now }: { ms: number; now: number }) {
  if (!ms) return null;
  return (
    <time dateTime={new Date(ms).toISOString()} title={absoluteTime(ms)}>
      {relativeTime(ms, now)}
    </time>
  );
}

export function Section({
  title,
  count,
  actions,
  children,
  id,
  className = "",
}: {
  title: string;
  count?: number;
  actions?: ReactNode;
  children: ReactNode;
  id?: string;
  className?: string;
}) {
  const headingId = useId();
  return (
    <section className={`card ${className}`} aria-labelledby={headingId} id={id}>
      <header className="card-head">
        <h2 id={headingId}>
          {title}
          {count !== undefined && <span className="count">{count}</span>}
        </h2>
        {actions && <div className="card-actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function ErrorNote({ children }: { children: ReactNode }) {
  return (
    <p className="error-note" role="alert">
      {children}
    </p>
  );
}

/** A button that runs an async action, shows it is busy and reports errors. */
export function AsyncButton({
  onClick,
  children,
  className = "btn",
  disabled,
  title,
  confirm,
}: {
  onClick: () => Promise<unknown> | unknown;
  children: ReactNode;
  className?: string;
  disabled?: boolean;
  title?: string;
  confirm?: string;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );
  return (
    <>
      <button
        type="button"
        className={className}
        disabled={disabled || busy}
        title={title}
        aria-busy={busy}
        onClick={async () => {
          if (confirm && !window.confirm(confirm)) return;
          setBusy(true);
          setError(null);
          try {
            await onClick();
          } catch (e) {
            if (mounted.current) setError(e instanceof Error ? e.message : String(e));
          } finally {
            if (mounted.current) setBusy(false);
          }
        }}
      >
        {children}
      </button>
      {error && (
        <span className="inline-error" role="alert">
          {error}
        </span>
      )}
    </>
  );
}

/** Spinner with reserved space (never changes layout). */
export function Spinner({ label }: { label?: string }) {
  return <span className="spinner" role="status" aria-label={label ?? "working"} />;
}

export function Loading({ children = "Loading…" }: { children?: ReactNode }) {
  return (
    <div className="loading">
      <Spinner /> {children}
    </div>
  );
}

/** The buttons under an item's edit form: delete on the left, cancel and
 * save (the form's submit) on the right. */
export function EditActions({ onDelete, onCancel }: { onDelete: () => void; onCancel: () => void }) {
  return (
    <div className="form-actions">
      <button type="button" className="btn btn-small btn-danger-text" onClick={onDelete}>
        Delete
      </button>
      <span className="grow" />
      <button type="button" className="btn btn-small" onClick={onCancel}>
        Cancel
      </button>
      <button type="submit" className="btn btn-small btn-primary">
        Save
      </button>
    </div>
  );
}
