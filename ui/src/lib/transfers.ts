// The transfer list as the UI holds it, and the rules of each row's state: which buttons it
// offers and how its state reads. Kept free of Svelte and Tauri so that Vitest can check it.

import type { State, Totals, Transfer, TransfersChanged } from "./bindings";

export interface View {
  /** The list version this view is at (the `version` of the last change applied). */
  version: number;
  /** Rows in the order they were added. */
  rows: Transfer[];
  totals: Totals;
}

export const emptyTotals: Totals = {
  queued: 0,
  running: 0,
  paused: 0,
  verified: 0,
  failed: 0,
  cancelled: 0,
  bytesTotal: 0,
  bytesDone: 0,
  bytesPerSec: 0,
};

export const emptyView: View = { version: 0, rows: [], totals: emptyTotals };

/**
 * Applies a change to a view. Returns `null` when the change starts after the view's version
 * (a change was missed): the caller then asks for everything since its version.
 */
export function applyChanges(view: View, change: TransfersChanged): View | null {
  if (change.full) {
    return {
      version: change.version,
      rows: [...change.rows].sort((a, b) => a.id - b.id),
      totals: change.totals,
    };
  }
  if (change.since > view.version) return null;
  if (change.version < view.version) return view; // older than what is shown
  const changed = new Map(change.rows.map((r) => [r.id, r]));
  const removed = new Set(change.removed);
  const rows: Transfer[] = [];
  for (const row of view.rows) {
    if (removed.has(row.id)) continue;
    const update = changed.get(row.id);
    rows.push(update ?? row);
    changed.delete(row.id);
  }
  // What is left is new; ids grow, so new rows go at the end in id order.
  const added = [...changed.values()].filter((r) => !removed.has(r.id)).sort((a, b) => a.id - b.id);
  return { version: change.version, rows: rows.concat(added), totals: change.totals };
}

export interface Actions {
  pause: boolean;
  resume: boolean;
  cancel: boolean;
  retry: boolean;
}

/** The buttons a row in `state` offers (the engine refuses the others). */
export function actionsFor(state: State): Actions {
  switch (state) {
    case "queued":
    case "hashing":
    case "uploading":
      return { pause: true, resume: false, cancel: true, retry: false };
    case "paused":
      return { pause: false, resume: true, cancel: true, retry: false };
    case "verifying":
      // The service is completing the object: nothing to stop any more.
      return { pause: false, resume: false, cancel: false, retry: false };
    case "failed":
    case "cancelled":
      return { pause: false, resume: false, cancel: false, retry: true };
    case "verified":
      return { pause: false, resume: false, cancel: false, retry: false };
  }
}

const LABELS: Record<State, string> = {
  queued: "Waiting",
  hashing: "Checking stored parts",
  uploading: "Uploading",
  paused: "Paused",
  verifying: "Verifying",
  verified: "Verified",
  failed: "Failed",
  cancelled: "Cancelled",
};

/** How a state reads in the list. */
export function stateLabel(state: State): string {
  return LABELS[state];
}

/** Whether a row is still on its way (shows speed and time left). */
export function isMoving(state: State): boolean {
  return state === "hashing" || state === "uploading" || state === "verifying";
}

export type Filter = "all" | "active" | "failed" | "verified";

/** Whether `row` shows under `filter`. */
export function matches(row: Transfer, filter: Filter): boolean {
  switch (filter) {
    case "all":
      return true;
    case "active":
      return !["verified", "failed", "cancelled"].includes(row.state);
    case "failed":
      return row.state === "failed" || row.state === "cancelled";
    case "verified":
      return row.state === "verified";
  }
}
