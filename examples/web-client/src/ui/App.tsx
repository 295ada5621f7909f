/**
 * The app: sign-in state, the connection, the routes.
 */
import { useCallback, useEffect, useState } from "react";
import type { Me } from "../api/client";
import { Connection } from "../sync/connection";
import { local } from "../sync/local";
import { ConnectionContext } from "./hooks";
import { matchRoute, navigate, useRoute } from "./router";
import { hasFragmentData, readFragment } from "./fragment";
import type { Notice } from "./Shell";
import { SignIn } from "./SignIn";
import { Shell } from "./Shell";
import { FeatureList } from "./FeatureList";
import { Dashboard } from "./Dashboard";
import { SessionView } from "./SessionView";
import { History } from "./History";
import { Link, paths } from "./router";
import { Loading } from "./components";

interface Auth {
  token: string;
  me: Me;
}

function initialAuth(): Auth | null {
  const token = local.token();
  const me = local.me();
  return token && me ? { token, me } : null;
}

export function App() {
  const [auth, setAuth] = useState<Auth | null>(initialAuth);
  // Read once at start: a token (printed link, GitHub sign-in), or how a
  // GitHub link or sign-in went. Cleared from the address bar right away.
  const [fragment] = useState(() => readFragment(location.hash));
  const [hashToken, setHashToken] = useState(fragment.token);
  const [notice, setNotice] = useState<Notice | null>(() =>
    fragment.githubError
      ? { tone: "bad", text: fragment.githubError.message }
      : fragment.githubLinked
        ? { tone: "good", text: "Your GitHub account is linked: pull requests you ask for are opened as you." }
        : null,
  );
  const [connection, setConnection] = useState<Connection | null>(null);
  const route = useRoute();

  useEffect(() => {
    if (hasFragmentData(fragment)) history.replaceState(null, "", location.pathname + location.search);
  }, [fragment]);

  // One connection per signed-in user; closed on sign-out.
  useEffect(() => {
    if (!auth) return;
    const conn = new Connection(auth.token, auth.me);
    setConnection(conn);
    // For debugging from the console: localStorage["canopy:debug"] = "1".
    if (import.meta.env.DEV || localStorage.getItem("canopy:debug") === "1") (window as unknown as { canopy: Connection }).canopy = conn;
    return () => {
      setConnection(null);
      void conn.close();
    };
  }, [auth]);

  const signedIn = useCallback((token: string, me: Me) => {
    local.saveSignIn(token, me);
    setHashToken(null);
    setNotice(null);
    setAuth({ token, me });
    // A sign-in from a link to a page (GitHub brings the browser back to
    // where it began) stays on that page.
    if (matchRoute(location.pathname).name === "signin") navigate(paths.features(), { replace: true });
  }, []);

  const signOut = useCallback(
    async (clearData: boolean) => {
      const userId = auth?.me.user_id;
      if (clearData) {
        local.clearAll(userId ? [userId] : []);
        // IndexedDB is deleted on the next start, before anything opens it.
        location.assign(paths.signin());
        return;
      }
      local.signOut();
      setAuth(null);
      navigate(paths.signin(), { replace: true });
    },
    [auth],
  );

  if (!auth || route.name === "signin" || hashToken) {
    if (auth && route.name === "signin" && !hashToken) {
      // Already signed in: the sign-in page offers to switch tokens.
      return <SignIn onSignedIn={signedIn} current={auth.me} initialToken={null} initialError={notice?.tone === "bad" ? notice.text : null} />;
    }
    return <SignIn onSignedIn={signedIn} current={null} initialToken={hashToken} initialError={notice?.tone === "bad" ? notice.text : null} />;
  }
  if (!connection) return <Loading>Opening your local copy…</Loading>;

  return (
    <ConnectionContext.Provider value={connection}>
      <Shell onSignOut={signOut} notice={notice} onDismissNotice={() => setNotice(null)}>
        {route.name === "features" && <FeatureList />}
        {route.name === "feature" && <Dashboard featureId={route.featureId} />}
        {route.name === "session" && <SessionView featureId={route.featureId} sessionId={route.sessionId} />}
        {route.name === "history" && <History featureId={route.featureId} />}
        {route.name === "notfound" && (
          <main className="page narrow">
            <h1>Nothing here</h1>
            <p>
              There is no page at <code>{route.path}</code>. <Link to={paths.features()}>All features</Link>
            </p>
          </main>
        )}
      </Shell>
    </ConnectionContext.Provider>
  );
}
