/**
 * The app: sign-in state, the connection, the routes.
 */
import { useCallback, useEffect, useState } from "react";
import type { Me } from "../api/client";
import { Connection } from "../sync/connection";
import { local } from "../sync/local";
import { ConnectionContext } from "./hooks";
import { navigate, useRoute } from "./router";
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

/** `#token=…` (the link `canopy serve` prints on first start). */
function tokenFromHash(): string | null {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]!) : null;
}

export function App() {
  const [auth, setAuth] = useState<Auth | null>(initialAuth);
  const [hashToken, setHashToken] = useState(tokenFromHash);
  const [connection, setConnection] = useState<Connection | null>(null);
  const route = useRoute();

  useEffect(() => {
    if (hashToken) history.replaceState(null, "", location.pathname + location.search);
  }, [hashToken]);

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
    setAuth({ token, me });
    navigate(paths.features(), { replace: true });
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
      return <SignIn onSignedIn={signedIn} current={auth.me} initialToken={null} />;
    }
    return <SignIn onSignedIn={signedIn} current={null} initialToken={hashToken} />;
  }
  if (!connection) return <Loading>Opening your local copy…</Loading>;

  return (
    <ConnectionContext.Provider value={connection}>
      <Shell onSignOut={signOut}>
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
