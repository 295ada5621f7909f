/**
 * The frame around every page: top bar (home, connection status, unsynced
 * count, account menu) and the offline banner.
 */
import { useEffect, useRef, useState } from "react";
import type { ReactNode } from "react";
import { useConnection, useConnectionState, useNow, useUnsyncedTotal } from "./hooks";
import { Link, paths } from "./router";
import { Avatar } from "./components";
import { plural } from "../model/format";
import { githubConfig } from "../api/client";

function ConnectionPill() {
  const state = useConnectionState();
  const unsynced = useUnsyncedTotal();
  const labels = { online: "Online", connecting: "Connecting…", offline: "Offline", unauthorized: "Signed out", stopped: "Stopped" } as const;
  return (
    <div className="conn" aria-live="polite">
      <span className={`conn-pill conn-${state.status}`} title={state.lastError ?? undefined}>
        <span className="conn-dot" aria-hidden="true" />
        {labels[state.status]}
      </span>
      <span className={`unsynced ${unsynced > 0 ? "visible" : ""}`} title="Changes made here that the server has not confirmed yet">
        {unsynced > 0 ? plural(unsynced, "unsynced change") : ""}
      </span>
    </div>
  );
}

/** Shown (as an overlay, so nothing below moves) while we are not connected. */
function OfflineBanner() {
  const conn = useConnection();
  const state = useConnectionState();
  const unsynced = useUnsyncedTotal();
  const now = useNow(1000);
  // Do not flash the banner during the first second of a connect.
  const [grace, setGrace] = useState(true);
  useEffect(() => {
    const t = setTimeout(() => setGrace(false), 1500);
    return () => clearTimeout(t);
  }, []);
  if (state.status === "online" || state.status === "stopped") return null;
  if (state.status === "unauthorized") {
    return (
      <div className="banner banner-bad" role="alert">
        The server no longer accepts your token, so nothing syncs. Your local copy is still here.{" "}
        <Link to={paths.signin()}>Sign in again</Link>
      </div>
    );
  }
  if (grace && state.attempt === 0) return null;
  const retryIn = state.retryAt ? Math.max(0, Math.ceil((state.retryAt - now) / 1000)) : null;
  return (
    <div className="banner banner-offline" role="status">
      <span>
        <strong>Offline.</strong> Keep working: edits stay on this device and sync when you reconnect.
        {unsynced > 0 ? ` ${plural(unsynced, "change")} waiting.` : ""}
      </span>
      <span className="banner-actions">
        {state.status === "connecting" ? "Connecting…" : retryIn !== null ? `Retrying in ${retryIn} s` : ""}
        {state.status !== "connecting" && (
          <button className="btn btn-small" type="button" onClick={() => conn.adapter.reconnectNow()}>
            Retry now
          </button>
        )}
      </span>
    </div>
  );
}

/** The linked GitHub account, or a way to link one (when the server has
 * an OAuth app). Asked of the server each time the menu opens: linking
 * happens in another tab or after a redirect. */
function GitHubAccount() {
  const conn = useConnection();
  const online = useConnectionState().status === "online";
  const [state, setState] = useState<{ login: string | null; offered: boolean } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!online) return;
    let live = true;
    void Promise.all([conn.api.me().catch(() => null), githubConfig()]).then(([me, config]) => {
      if (live) setState({ login: me?.github?.login ?? null, offered: config.sign_in });
    });
    return () => {
      live = false;
    };
  }, [conn, online]);
  if (!state) return null;
  if (state.login) {
    return (
      <p className="menu-github">
        GitHub: <strong>@{state.login}</strong>
      </p>
    );
  }
  if (!state.offered) return null;
  return (
    <div className="menu-github">
      <button
        type="button"
        className="btn btn-small"
        onClick={async () => {
          setError(null);
          try {
            const { authorize_url } = await conn.api.linkGitHub();
            location.assign(authorize_url);
          } catch (e) {
            setError(e instanceof Error ? e.message : String(e));
          }
        }}
      >
        Link your GitHub account
      </button>
      <p className="fine">Pull requests you ask for are then opened as you.</p>
      {error && <p className="fine warn-text">{error}</p>}
    </div>
  );
}

/** A one-time message for the whole app (how a GitHub link went). */
export interface Notice {
  tone: "good" | "bad";
  text: string;
}

function AccountMenu({ onSignOut }: { onSignOut: (clearData: boolean) => void }) {
  const conn = useConnection();
  const [open, setOpen] = useState(false);
  const [clear, setClear] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const close = (e: Event) => {
      if (ref.current && !ref.current.contains(e.target as Node)) setOpen(false);
    };
    const esc = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    document.addEventListener("pointerdown", close);
    document.addEventListener("keydown", esc);
    return () => {
      document.removeEventListener("pointerdown", close);
      document.removeEventListener("keydown", esc);
    };
  }, [open]);
  const name = conn.me.display_name || conn.me.handle;
  return (
    <div className="account" ref={ref}>
      <button type="button" className="account-button" aria-expanded={open} aria-haspopup="true" onClick={() => setOpen((o) => !o)}>
        <Avatar id={conn.me.user_id} name={name} size="sm" />
        <span className="account-name">{name}</span>
      </button>
      {open && (
        <div className="menu" role="dialog" aria-label="Account">
          <p className="menu-who">
            <strong>{name}</strong>
            <br />
            <span className="muted">@{conn.me.handle}</span>
          </p>
          <GitHubAccount />
          <label className="check">
            <input type="checkbox" checked={clear} onChange={(e) => setClear(e.target.checked)} />
            Also delete this device's copy of your features (IndexedDB and cached data)
          </label>
          {clear && <p className="fine warn-text">Unsynced changes on this device will be lost.</p>}
          <button type="button" className="btn btn-danger" onClick={() => onSignOut(clear)}>
            Sign out
          </button>
        </div>
      )}
    </div>
  );
}

export function Shell({
  children,
  onSignOut,
  notice = null,
  onDismissNotice,
}: {
  children: ReactNode;
  onSignOut: (clearData: boolean) => void;
  notice?: Notice | null;
  onDismissNotice?: () => void;
}) {
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to={paths.features()} className="brand" aria-label="Canopy: all features">
          <span className="brand-mark" aria-hidden="true" />
          <span className="brand-name">Canopy</span>
        </Link>
        <div className="topbar-right">
          <ConnectionPill />
          <AccountMenu onSignOut={onSignOut} />
        </div>
      </header>
      <OfflineBanner />
      {notice && (
        <div className={`notice notice-${notice.tone}`} role={notice.tone === "bad" ? "alert" : "status"}>
          <span>{notice.text}</span>
          <button type="button" className="link-button" onClick={onDismissNotice}>
            Dismiss
          </button>
        </div>
      )}
      <div id="main" className="shell-main">
        {children}
      </div>
    </div>
  );
}
