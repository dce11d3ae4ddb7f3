// The sign-in screen rendered to HTML (Svelte's server renderer), as the policy shapes it.
import { describe, expect, test } from "vitest";
import { render } from "svelte/server";
import SignIn from "./SignIn.svelte";
import type { PolicyInfo, SessionInfo } from "../lib/bindings";

const policy: PolicyInfo = {
  origin: "/etc/valet-upload/policy.json",
  fileName: "policy.json",
  locked: ["server"],
  server: "https://valet.example.com",
  serverLocked: true,
  signInScreen: true,
  sso: false,
  signOutLocked: false,
  folders: [],
  problem: null,
};

const session: SessionInfo = {
  signedIn: false,
  server: "https://old.example.com",
  user: null,
  suggestedServer: null,
  problem: null,
  policy,
};

function html(p: PolicyInfo | null): string {
  return render(SignIn, { props: { session, policy: p, onSignedIn: () => {} } }).body;
}

describe("SignIn", () => {
  test("a locked server is the policy's, read-only, announced locked, with the file named", () => {
    const body = html(policy);
    expect(body).toMatch(/<input id="server"[^>]*value="https:\/\/valet.example.com"/);
    expect(body).toMatch(/<input id="server"[^>]*readonly/);
    expect(body).toContain('aria-label="Service address (locked: set by your organisation)"');
    expect(body).toContain("Set by your organisation (policy.json)");
  });

  test("without a policy the server is the person's to type", () => {
    const body = render(SignIn, {
      props: { session: { ...session, policy: { ...policy, server: null } }, policy: null, onSignedIn: () => {} },
    }).body;
    expect(body).toMatch(/<input id="server"[^>]*value="https:\/\/old.example.com"/);
    expect(body).not.toMatch(/<input id="server"[^>]*readonly/);
    expect(body).not.toContain("Set by your organisation");
  });

  test("without a policy, password and single sign-on are both offered", () => {
    const body = html(null);
    expect(body).toContain('id="password"');
    expect(body).toContain("Sign in with single sign-on");
  });

  test("a policy of single sign-on offers only the organisation's sign-in page", () => {
    const body = html({ ...policy, sso: true });
    expect(body).not.toContain('id="password"');
    expect(body).toMatch(/<button id="sso-button" type="submit"[^>]*>\s*Sign in with your organisation/);
    expect(body).not.toContain("waiting for sign-in by your organisation");
  });

  test("when the policy hides the sign-in screen, it says the organisation signs in", () => {
    const body = html({ ...policy, signInScreen: false });
    expect(body).toContain("This computer is managed; waiting for sign-in by your organisation.");
    expect(body).not.toContain('id="password"');
  });
});
