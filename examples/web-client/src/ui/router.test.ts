import { describe, expect, it } from "vitest";
import { matchRoute, paths } from "./router";

describe("matchRoute", () => {
  it("matches the four routes and round-trips paths", () => {
    expect(matchRoute("/")).toEqual({ name: "features" });
    expect(matchRoute("/signin/")).toEqual({ name: "signin" });
    expect(matchRoute(paths.feature("ftr_abc"))).toEqual({ name: "feature", featureId: "ftr_abc" });
    expect(matchRoute(paths.session("ftr_abc", "ses_x y"))).toEqual({ name: "session", featureId: "ftr_abc", sessionId: "ses_x y" });
  });
  it("reports anything else as not found", () => {
    expect(matchRoute("/f")).toEqual({ name: "notfound", path: "/f" });
    expect(matchRoute("/f/a/s")).toEqual({ name: "notfound", path: "/f/a/s" });
    expect(matchRoute("/elsewhere")).toMatchObject({ name: "notfound" });
  });
});
