import { describe, expect, it } from "vitest";
import { matchRoute, paths } from "./router";

describe("matchRoute", () => {
  it("matches the four page routes and round-trips paths", () => {
    expect(matchRoute("/")).toEqual({ name: "features" });
    expect(matchRoute("/signin/")).toEqual({ name: "signin" });
    expect(matchRoute(paths.feature("ftr_abc"))).toEqual({ name: "feature", featureId: "ftr_abc" });
    expect(matchRoute(paths.session("ftr_abc", "ses_x y"))).toEqual({ name: "session", featureId: "ftr_abc", sessionId: "ses_x y" });
  });
  it("matches the history browser, its query left to the view", () => {
    expect(paths.history("ftr_abc")).toBe("/f/ftr_abc/history");
    expect(paths.history("ftr_abc", "?at=ab,cd&kind=notes")).toBe("/f/ftr_abc/history?at=ab,cd&kind=notes");
    expect(matchRoute(paths.history("ftr_a/b"))).toEqual({ name: "history", featureId: "ftr_a/b" });
    expect(matchRoute("/f/ftr_abc/history/")).toEqual({ name: "history", featureId: "ftr_abc" });
    expect(matchRoute("/f/ftr_abc/histories")).toMatchObject({ name: "notfound" });
    expect(matchRoute("/f/ftr_abc/history/extra")).toMatchObject({ name: "notfound" });
  });
  it("reports anything else as not found", () => {
    expect(matchRoute("/f")).toEqual({ name: "notfound", path: "/f" });
    expect(matchRoute("/f/a/s")).toEqual({ name: "notfound", path: "/f/a/s" });
    expect(matchRoute("/elsewhere")).toMatchObject({ name: "notfound" });
  });
});
