import { describe, expect, test } from "vitest";
import type { WatchStatus } from "./bindings";
import {
  addFolder,
  folderName,
  fromDraft,
  newFolder,
  overlaps,
  statusLine,
  textToGlobs,
  toDraft,
  watchSummary,
} from "./watched";

function status(state: WatchStatus["state"], sent = 0, problem: string | null = null): WatchStatus {
  return { path: "/w", state, problem, sent };
}

describe("addFolder", () => {
  test("a full path is added with the defaults", () => {
    const result = addFolder([], "  /home/me/Scans ");
    expect("list" in result && result.list).toEqual([toDraft(newFolder("/home/me/Scans"))]);
    const added = "list" in result ? result.list[0] : null;
    expect(added?.enabled).toBe(true);
    expect(added?.afterUpload).toBe("leave");
  });

  test("empty, relative, repeated and nested paths are refused with a reason", () => {
    const list = [toDraft(newFolder("/home/me/Scans"))];
    const error = (typed: string) => {
      const result = addFolder(list, typed);
      return "error" in result ? result.error : "added";
    };
    expect(error("")).toMatch(/Enter the folder's path/);
    expect(error("Scans")).toMatch(/full path/);
    expect(error("/home/me/Scans/")).toMatch(/watched already/);
    expect(error("/home/me/Scans/inbox")).toMatch(/overlaps \/home\/me\/Scans/);
    expect(error("/home/me")).toMatch(/overlaps/);
    expect(error("/home/me/Scans2")).toBe("added");
    expect(error("C:\\Users\\me\\Scans")).toBe("added");
  });
});

describe("overlaps", () => {
  test("compares whole path parts, not letters", () => {
    expect(overlaps("/a/b", "/a/b/c")).toBe(true);
    expect(overlaps("/a/b", "/a/bc")).toBe(false);
    expect(overlaps("/a/b/", "/a/b")).toBe(true);
  });
});

describe("drafts", () => {
  test("globs are edited one per line and saved without blanks", () => {
    const draft = toDraft({ ...newFolder("/w"), include: ["*.pdf", "{a,b}/*.tif"] });
    expect(draft.includeText).toBe("*.pdf\n{a,b}/*.tif");
    draft.excludeText = " draft/** \n\n  *.bak\n";
    draft.settleSecs = "1.5" as unknown as number; // what a number field may hold
    const saved = fromDraft(draft);
    expect(saved.include).toEqual(["*.pdf", "{a,b}/*.tif"]);
    expect(saved.exclude).toEqual(["draft/**", "*.bak"]);
    expect(saved.settleSecs).toBe(1.5);
    expect(saved).not.toHaveProperty("includeText");
  });

  test("textToGlobs keeps commas inside a glob", () => {
    expect(textToGlobs("{x,y}.pdf")).toEqual(["{x,y}.pdf"]);
  });
});

describe("statusLine", () => {
  const folder = newFolder("/w");
  test("a missing folder says why and that it recovers by itself", () => {
    const line = statusLine(folder, status("unavailable", 0, "the folder is gone (deleted, renamed or unmounted)"));
    expect(line.kind).toBe("problem");
    expect(line.text).toContain("the folder is gone");
    expect(line.text).toContain("resumes by itself");
  });

  test("watching counts files sent; paused and unsaved folders say so", () => {
    expect(statusLine(folder, status("watching", 1)).text).toContain("1 file sent");
    expect(statusLine(folder, status("watching", 2)).text).toContain("2 files sent");
    expect(statusLine({ ...folder, enabled: false }, status("watching")).text).toMatch(/^Paused/);
    expect(statusLine(folder, undefined).text).toMatch(/save to start/);
  });
});

describe("watchSummary", () => {
  test("nothing without folders; problems are counted and point to Settings", () => {
    expect(watchSummary([])).toBeNull();
    expect(watchSummary([status("watching")])).toEqual({ kind: "ok", text: "Watching 1 folder." });
    const mixed = watchSummary([status("watching"), status("unavailable"), status("paused")]);
    expect(mixed?.kind).toBe("problem");
    expect(mixed?.text).toBe("Watching 1 folder; 1 folder cannot be watched (see Settings).");
  });
});

test("folderName is the last part of the path", () => {
  expect(folderName("/home/me/Scans/")).toBe("Scans");
  expect(folderName("C:\\Users\\me\\Inbox")).toBe("Inbox");
});
