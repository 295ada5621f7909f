import { describe, expect, it } from "vitest";
import { hasFragmentData, readFragment } from "./fragment";

describe("readFragment", () => {
  it("reads the printed sign-in link and a GitHub sign-in's token", () => {
    expect(readFragment("#token=canopy_abc_DEF").token).toBe("canopy_abc_DEF");
    expect(readFragment("#canopy_token=canopy_x_Y").token).toBe("canopy_x_Y");
    expect(readFragment("canopy_token=canopy_x_Y").token).toBe("canopy_x_Y");
  });

  it("reads a linked account and a failure with its message", () => {
    expect(readFragment("#github=linked")).toEqual({ token: null, githubLinked: true, githubError: null });
    const failed = readFragment("#github_error=github_refused&message=GitHub%20did%20not%20authorize%20Canopy%3A%20no");
    expect(failed.githubError).toEqual({ code: "github_refused", message: "GitHub did not authorize Canopy: no" });
    expect(readFragment("#github_error=not_linked").githubError?.message).toMatch(/did not work/);
  });

  it("ignores what it does not know, and tokens that cannot be tokens", () => {
    for (const h of ["", "#", "#section-2", "#token=", "#token=a%20b", `#token=${"x".repeat(600)}`, "#github=maybe"]) {
      expect(hasFragmentData(readFragment(h)), h).toBe(false);
    }
    const long = readFragment(`#github_error=${"c".repeat(100)}&message=${"m".repeat(900)}`).githubError!;
    expect([long.code.length, long.message.length]).toEqual([64, 500]);
  });
});
