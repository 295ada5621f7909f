import { describe, expect, it } from "vitest";
import { OFFLINE_AFTER_MS, TYPING_WINDOW_MS, applyPresence, applyTyping, myPresenceStatus, presenceModel, typingSentence, typingUsers } from "./presence";
import type { ParticipantView } from "../doc/feature";

const participants: ParticipantView[] = [
  { userId: "usr_ana", name: "Ana", role: "owner" },
  { userId: "usr_bo", name: "Bo", role: "contributor" },
  { userId: "usr_cy", name: "Cy", role: "viewer" },
];

describe("presence", () => {
  it("derives active / idle / offline from the last presence heard", () => {
    let records = applyPresence({}, { type: "presence", user_id: "usr_bo", status: "idle", session_id: "ses_x" }, 1_000);
    records = applyPresence(records, { type: "presence", user_id: "usr_cy", status: "active" }, 1_000);
    const now = 1_000 + OFFLINE_AFTER_MS - 1;
    let view = presenceModel(participants, records, {}, now, "usr_ana");
    expect(view.map((p) => [p.name, p.state, p.isMe])).toEqual([
      ["Ana", "active", true],
      ["Cy", "active", false],
      ["Bo", "idle", false],
    ]);
    expect(view.find((p) => p.userId === "usr_bo")!.sessionId).toBe("ses_x");
    view = presenceModel(participants, records, {}, 1_000 + OFFLINE_AFTER_MS + 1, "usr_ana");
    expect(view.filter((p) => p.state === "offline").map((p) => p.name)).toEqual(["Bo", "Cy"]);
  });

  it("shows someone who left offline at once, and present again when they return", () => {
    let records = applyPresence({}, { type: "presence", user_id: "usr_bo", status: "active" }, 1_000);
    records = applyPresence(records, { type: "presence", user_id: "usr_bo", status: "left" }, 2_000);
    expect(presenceModel(participants, records, {}, 2_001, "usr_ana").find((p) => p.userId === "usr_bo")!.state).toBe("offline");
    records = applyPresence(records, { type: "presence", user_id: "usr_bo", status: "active" }, 3_000);
    expect(presenceModel(participants, records, {}, 3_001, "usr_ana").find((p) => p.userId === "usr_bo")!.state).toBe("active");
  });

  it("shows present people who are not in the participants mirror yet", () => {
    const records = applyPresence({}, { type: "presence", user_id: "usr_new", name: "Dee", status: "active" }, 10);
    const view = presenceModel(participants, records, {}, 20, null);
    expect(view.find((p) => p.userId === "usr_new")).toMatchObject({ name: "Dee", state: "active", role: "" });
  });

  it("keeps the last known name when a presence omits it", () => {
    let records = applyPresence({}, { type: "presence", user_id: "usr_new", name: "Dee", status: "active" }, 10);
    records = applyPresence(records, { type: "presence", user_id: "usr_new", status: "away" }, 20);
    expect(records.usr_new).toMatchObject({ name: "Dee", status: "away", lastSeen: 20 });
  });

  it("computes this client's own status", () => {
    expect(myPresenceStatus(false, 0, 10)).toBe("away");
    expect(myPresenceStatus(true, 0, 61_000)).toBe("idle");
    expect(myPresenceStatus(true, 50_000, 61_000)).toBe("active");
  });
});

describe("typing", () => {
  it("lists who types in a session within the window, never me", () => {
    let t = applyTyping({}, { type: "typing", user_id: "usr_bo", session_id: "ses_1" }, 100);
    t = applyTyping(t, { type: "typing", user_id: "usr_cy", session_id: "ses_2" }, 100);
    t = applyTyping(t, { type: "typing", user_id: "usr_ana", session_id: "ses_1" }, 100);
    expect(typingUsers(t, 200, "usr_ana")).toEqual(["usr_bo", "usr_cy"]);
    expect(typingUsers(t, 200, "usr_ana", "ses_1")).toEqual(["usr_bo"]);
    expect(typingUsers(t, 100 + TYPING_WINDOW_MS + 1, "usr_ana")).toEqual([]);
    const view = presenceModel(participants, {}, t, 200, "usr_ana");
    expect(view.find((p) => p.userId === "usr_bo")!.typing).toBe("ses_1");
  });

  it("says it in a sentence", () => {
    expect(typingSentence([])).toBe("");
    expect(typingSentence(["Bo"])).toBe("Bo is typing…");
    expect(typingSentence(["Bo", "Cy"])).toBe("Bo and Cy are typing…");
    expect(typingSentence(["Bo", "Cy", "Dee", "Eve"])).toBe("Bo, Cy and 2 others are typing…");
  });
});
