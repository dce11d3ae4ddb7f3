import { describe, expect, test } from "vitest";
import type { PolicyInfo } from "./bindings";
import { isLocked, lockedLabel, lockNote, problemText, waitsForOrganisation } from "./policy";

const none: PolicyInfo = {
  origin: null,
  fileName: null,
  locked: [],
  server: null,
  serverLocked: false,
  signInScreen: true,
  sso: false,
  signOutLocked: false,
  folders: [],
  problem: null,
};

const managed: PolicyInfo = {
  ...none,
  origin: "/etc/valet-upload/policy.json",
  fileName: "policy.json",
  locked: ["bandwidth", "sign_out"],
};

describe("policy", () => {
  test("only locked settings are locked, with the file named", () => {
    expect(isLocked(managed, "bandwidth")).toBe(true);
    expect(isLocked(managed, "parallel_parts")).toBe(false);
    expect(isLocked(null, "bandwidth")).toBe(false);
    expect(lockNote(managed, "bandwidth")).toBe("Set by your organisation (policy.json)");
    expect(lockNote(managed, "notifications")).toBeNull();
    expect(lockNote(none, "bandwidth")).toBeNull();
  });

  test("a screen reader hears that a field is locked", () => {
    expect(lockedLabel("Bandwidth limit", managed, "bandwidth")).toBe(
      "Bandwidth limit (locked: set by your organisation)",
    );
    expect(lockedLabel("Parts", managed, "parallel_parts")).toBe("Parts");
  });

  test("a broken policy names file and field and says what is in force", () => {
    expect(problemText(managed)).toBeNull();
    const message = "policy /p.json: field `limits.parallel_parts`: 65 is out of range: 1 to 64";
    const broken = {
      ...managed,
      problem: { origin: "/p.json", field: "limits.parallel_parts", message, lastGoodInForce: true },
    };
    expect(problemText(broken)).toContain("/p.json: field `limits.parallel_parts`");
    expect(problemText(broken)).toContain("last good policy is still in force");
    const first = { ...broken, problem: { ...broken.problem, lastGoodInForce: false } };
    expect(problemText(first)).toContain("No policy is in force.");
  });

  test("the sign-in form gives way only when the policy says so", () => {
    expect(waitsForOrganisation(null)).toBe(false);
    expect(waitsForOrganisation(none)).toBe(false);
    expect(waitsForOrganisation({ ...managed, signInScreen: false })).toBe(true);
    // Single sign-on needs the person: the organisation's page opens instead of waiting.
    expect(waitsForOrganisation({ ...managed, signInScreen: false, sso: true })).toBe(false);
  });
});
