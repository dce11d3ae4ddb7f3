// The machine's policy as the screens show it: which settings are locked, the note that says
// who set them, and the banner for a broken policy. Pure functions, tested with Vitest.
import type { PolicyInfo } from "./bindings";

/** The settings a policy can lock (`locked` in the policy file). */
export type Lockable =
  | "server"
  | "parallel_parts"
  | "bandwidth"
  | "notifications"
  | "autostart"
  | "watched_folders"
  | "sign_out";

export function isLocked(policy: PolicyInfo | null, setting: Lockable): boolean {
  return policy !== null && policy.locked.includes(setting);
}

/** "Set by your organisation (policy.json)" for a locked setting, else null. */
export function lockNote(policy: PolicyInfo | null, setting: Lockable): string | null {
  if (!policy || !isLocked(policy, setting)) return null;
  return `Set by your organisation (${policy.fileName ?? "policy"})`;
}

/** A field's accessible name: its label, and that it is locked when it is. */
export function lockedLabel(label: string, policy: PolicyInfo | null, setting: Lockable): string {
  return isLocked(policy, setting) ? `${label} (locked: set by your organisation)` : label;
}

/** The banner for a policy that cannot be used: its file and field, and what is in force. */
export function problemText(policy: PolicyInfo | null): string | null {
  const problem = policy?.problem;
  if (!problem) return null;
  const inForce = problem.lastGoodInForce
    ? "The last good policy is still in force."
    : "No policy is in force.";
  return `Your organisation's policy has a problem: ${problem.message}. ${inForce}`;
}

/**
 * Whether the sign-in form is replaced by "waiting for sign-in by your organisation". Not with
 * single sign-on: a person signs in at the organisation's page, which opens by itself.
 */
export function waitsForOrganisation(policy: PolicyInfo | null): boolean {
  return policy !== null && !policy.signInScreen && !policy.sso;
}
