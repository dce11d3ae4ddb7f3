import { describe, expect, test } from "vitest";
import type { State, Transfer, TransfersChanged } from "./bindings";
import { actionsFor, applyChanges, emptyTotals, emptyView, matches, stateLabel } from "./transfers";

function row(id: number, state: State = "queued", bytesDone = 0): Transfer {
  return {
    id,
    name: `f${id}.bin`,
    path: `/data/f${id}.bin`,
    folder: null,
    watchedFolder: null,
    size: 100,
    state,
    bytesDone,
    alreadyStored: 0,
    bytesSent: bytesDone,
    bytesPerSec: 0,
    etaSecs: null,
    objectKey: null,
    sha256: null,
    problem: null,
  };
}

function change(since: number, version: number, rows: Transfer[], removed: number[] = [], full = false): TransfersChanged {
  return { since, version, full, rows, removed, totals: emptyTotals };
}

describe("applyChanges", () => {
  test("a full change replaces the view, rows in the order added", () => {
    const view = applyChanges(emptyView, change(0, 3, [row(2), row(1)], [], true))!;
    expect(view.rows.map((r) => r.id)).toEqual([1, 2]);
    expect(view.version).toBe(3);
  });

  test("changed rows are replaced in place, new ones appended, removed ones dropped", () => {
    const start = applyChanges(emptyView, change(0, 3, [row(1), row(2), row(3)], [], true))!;
    const next = applyChanges(start, change(3, 5, [row(4), row(2, "uploading", 50)], [1]))!;
    expect(next.rows.map((r) => [r.id, r.state])).toEqual([
      [2, "uploading"],
      [3, "queued"],
      [4, "queued"],
    ]);
    expect(next.rows[1]).toBe(start.rows[2]); // untouched rows keep their identity
    expect(next.version).toBe(5);
  });

  test("a gap is detected so the caller can catch up", () => {
    const start = applyChanges(emptyView, change(0, 3, [row(1)], [], true))!;
    expect(applyChanges(start, change(4, 6, [row(1, "verified")]))).toBeNull();
  });

  test("a change that overlaps what was seen is applied again harmlessly", () => {
    const start = applyChanges(emptyView, change(0, 3, [row(1), row(2)], [], true))!;
    const caught = applyChanges(start, change(1, 4, [row(1, "paused")]))!;
    expect(caught.rows.map((r) => r.state)).toEqual(["paused", "queued"]);
    expect(applyChanges(caught, change(0, 2, [row(1, "queued")]))).toBe(caught);
  });
});

describe("row state rules", () => {
  test("waiting and uploading rows can be paused or cancelled", () => {
    for (const s of ["queued", "hashing", "uploading"] as const) {
      expect(actionsFor(s)).toEqual({ pause: true, resume: false, cancel: true, retry: false });
    }
  });
  test("a paused row resumes or cancels", () => {
    expect(actionsFor("paused")).toEqual({ pause: false, resume: true, cancel: true, retry: false });
  });
  test("a verifying row offers nothing: the object is being completed", () => {
    expect(actionsFor("verifying")).toEqual({ pause: false, resume: false, cancel: false, retry: false });
  });
  test("failed and cancelled rows offer retry only; verified rows offer nothing", () => {
    expect(actionsFor("failed").retry).toBe(true);
    expect(actionsFor("cancelled")).toEqual({ pause: false, resume: false, cancel: false, retry: true });
    expect(Object.values(actionsFor("verified")).some(Boolean)).toBe(false);
  });
  test("every state reads as words", () => {
    const states: State[] = ["queued", "hashing", "uploading", "paused", "verifying", "verified", "failed", "cancelled"];
    const labels = states.map(stateLabel);
    expect(new Set(labels).size).toBe(states.length);
    expect(stateLabel("queued")).toBe("Waiting");
  });
  test("filters split the list", () => {
    expect(matches(row(1, "paused"), "active")).toBe(true);
    expect(matches(row(1, "cancelled"), "failed")).toBe(true);
    expect(matches(row(1, "verified"), "active")).toBe(false);
    expect(matches(row(1, "verified"), "verified")).toBe(true);
  });
});
