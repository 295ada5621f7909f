/**
 * What the server hands the browser in the URL fragment (never sent to a
 * server, cleared from the address bar once read):
 *
 *   #token=…          the sign-in link `canopy serve` prints
 *   #canopy_token=…   a sign-in with GitHub that worked
 *   #github=linked    a GitHub account was linked
 *   #github_error=<code>&message=…   GitHub sign-in or linking failed
 */
export interface Fragment {
  token: string | null;
  githubLinked: boolean;
  githubError: { code: string; message: string } | null;
}

const NONE: Fragment = { token: null, githubLinked: false, githubError: null };

/** Read `hash` (with or without its `#`); unknown fragments read as none. */
export function readFragment(hash: string): Fragment {
  const raw = hash.replace(/^#/, "");
  if (!raw) return NONE;
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(raw);
  } catch {
    return NONE;
  }
  const token = params.get("canopy_token") ?? params.get("token");
  const code = params.get("github_error");
  return {
    token: token && /^[\x21-\x7e]{1,512}$/.test(token) ? token : null,
    githubLinked: params.get("github") === "linked",
    githubError: code
      ? { code: code.slice(0, 64), message: (params.get("message") ?? "Signing in with GitHub did not work.").slice(0, 500) }
      : null,
  };
}

/** Whether the fragment carried anything this module reads. */
export function hasFragmentData(f: Fragment): boolean {
  return f.token !== null || f.githubLinked || f.githubError !== null;
}
