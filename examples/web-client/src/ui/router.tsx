/**
 * Client-side routing over the History API (no router dependency).
 *
 *   /                          features
 *   /signin                    sign in
 *   /f/:featureId              feature dashboard
 *   /f/:featureId/s/:sessionId session view
 *   /f/:featureId/history      history browser (its state in the query:
 *                              ?at=…&from=…&author=…&kind=…&path=…)
 */
import { useSyncExternalStore } from "react";
import type { AnchorHTMLAttributes, MouseEvent } from "react";

export type Route =
  | { name: "features" }
  | { name: "signin" }
  | { name: "feature"; featureId: string }
  | { name: "session"; featureId: string; sessionId: string }
  | { name: "history"; featureId: string }
  | { name: "notfound"; path: string };

export function matchRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/") return { name: "features" };
  if (path === "/signin") return { name: "signin" };
  const parts = path.split("/").slice(1).map(decodeURIComponent);
  if (parts[0] === "f" && parts[1]) {
    if (parts.length === 2) return { name: "feature", featureId: parts[1] };
    if (parts.length === 3 && parts[2] === "history") return { name: "history", featureId: parts[1] };
    if (parts.length === 4 && parts[2] === "s" && parts[3]) return { name: "session", featureId: parts[1], sessionId: parts[3] };
  }
  return { name: "notfound", path };
}

export const paths = {
  features: () => "/",
  signin: () => "/signin",
  feature: (featureId: string) => `/f/${encodeURIComponent(featureId)}`,
  session: (featureId: string, sessionId: string) => `/f/${encodeURIComponent(featureId)}/s/${encodeURIComponent(sessionId)}`,
  /** `search` is a query string ("" or "?…"). */
  history: (featureId: string, search = "") => `/f/${encodeURIComponent(featureId)}/history${search}`,
};

const listeners = new Set<() => void>();
function subscribe(fn: () => void) {
  listeners.add(fn);
  window.addEventListener("popstate", fn);
  return () => {
    listeners.delete(fn);
    window.removeEventListener("popstate", fn);
  };
}

/**
 * Go to `to` (a path with an optional query). `replace` rewrites the current
 * history entry (a view whose state lives in the query, such as the history
 * browser's scrubber, updates it as the user moves without piling up Back
 * steps); `keepScroll` leaves the scroll position alone, for such updates.
 */
export function navigate(to: string, options: { replace?: boolean; keepScroll?: boolean } = {}) {
  if (to === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  if (!options.keepScroll) window.scrollTo(0, 0);
  for (const fn of listeners) fn();
}

export function useLocationPath(): string {
  return useSyncExternalStore(subscribe, () => location.pathname);
}

/** The query string ("" or "?…"), re-rendering when `navigate` or Back changes it. */
export function useLocationSearch(): string {
  return useSyncExternalStore(subscribe, () => location.search);
}

export function useRoute(): Route {
  return matchRoute(useLocationPath());
}

/** An `<a>` that navigates without a page load (modifier clicks still open tabs). */
export function Link({ to, onClick, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const handle = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handle} {...rest} />;
}
