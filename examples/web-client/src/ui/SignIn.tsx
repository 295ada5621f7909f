import { useEffect, useId, useRef, useState } from "react";
import type { FormEvent } from "react";
import { Api, ApiError, githubConfig, githubLoginUrl } from "../api/client";
import type { Me } from "../api/client";
import { Link, paths } from "./router";

export function SignIn({
  onSignedIn,
  current,
  initialToken,
  initialError = null,
}: {
  onSignedIn: (token: string, me: Me) => void;
  current: Me | null;
  initialToken: string | null;
  /** Why the last sign-in with GitHub failed. */
  initialError?: string | null;
}) {
  const [token, setToken] = useState(initialToken ?? "");
  const [error, setError] = useState<string | null>(initialError);
  // Offered only when the server has an OAuth app (asked once, public).
  const [withGitHub, setWithGitHub] = useState(false);
  useEffect(() => {
    let live = true;
    void githubConfig().then((c) => live && setWithGitHub(c.sign_in));
    return () => {
      live = false;
    };
  }, []);
  const [busy, setBusy] = useState(false);
  const inputId = useId();
  const autoTried = useRef(false);

  async function submit(value: string) {
    const t = value.trim();
    if (!t) {
      setError("Paste your API token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await new Api(t).me();
      if (me.scope?.kind && me.scope.kind !== "user") {
        setError("That is a sandbox token; sign in with a person's API token.");
        return;
      }
      onSignedIn(t, me);
    } catch (e) {
      if (e instanceof ApiError && e.unauthorized) setError("The server did not accept that token. Check it, or create a new one.");
      else if (e instanceof ApiError && e.network) setError("Cannot reach the Canopy server. Signing in needs a connection.");
      else setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    if (initialToken && !autoTried.current) {
      autoTried.current = true;
      void submit(initialToken);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [initialToken]);

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    void submit(token);
  };

  return (
    <main className="signin">
      <div className="signin-card card">
        <div className="brand brand-lg">
          <span className="brand-mark" aria-hidden="true" />
          Canopy
        </div>
        <p className="muted">Background coding agents your whole team can steer.</p>
        {current && (
          <p className="note">
            Signed in as <strong>{current.display_name || current.handle}</strong>. Sign in with another token below, or{" "}
            <Link to={paths.features()}>go back</Link>.
          </p>
        )}
        {withGitHub && (
          <>
            <a className="btn btn-github" href={githubLoginUrl(location.pathname + location.search)}>
              Sign in with GitHub
            </a>
            <p className="or" aria-hidden="true">
              or
            </p>
          </>
        )}
        <form onSubmit={onSubmit} className="stack">
          <label htmlFor={inputId}>API token</label>
          <input
            id={inputId}
            type="password"
            autoComplete="current-password"
            spellCheck={false}
            placeholder="canopy_…"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            autoFocus
          />
          {error && (
            <p className="error-note" role="alert">
              {error}
            </p>
          )}
          <button className="btn btn-primary" type="submit" disabled={busy} aria-busy={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </form>
        <p className="fine">
          The server prints the first user's token when it starts on a new data directory. More tokens:{" "}
          <code>canopy token create --user &lt;handle&gt;</code>. The token stays in this browser (localStorage) until you sign out.
        </p>
      </div>
    </main>
  );
}

