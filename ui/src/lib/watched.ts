// Watched folders as the settings dialog edits them, and how a folder's state reads. Kept free
// of Svelte and Tauri so that Vitest can check it.

import type { WatchedFolder, WatchStatus } from "./bindings";

/** A folder being edited: its globs as typed, one per line. */
export type FolderDraft = WatchedFolder & { includeText: string; excludeText: string };

/** Settings of a folder just added: sent to the top folder, 3 s settle, files left in place. */
export function newFolder(path: string): WatchedFolder {
  return {
    path,
    to: "",
    settleSecs: 3,
    afterUpload: "leave",
    moveTo: "uploaded",
    include: [],
    exclude: [],
    enabled: true,
  };
}

export function toDraft(folder: WatchedFolder): FolderDraft {
  return { ...folder, includeText: folder.include.join("\n"), excludeText: folder.exclude.join("\n") };
}

export function fromDraft(draft: FolderDraft): WatchedFolder {
  const { includeText, excludeText, ...folder } = draft;
  return {
    ...folder,
    settleSecs: Number(folder.settleSecs),
    include: textToGlobs(includeText),
    exclude: textToGlobs(excludeText),
  };
}

/** Globs typed one per line (a comma could be part of a glob: `{a,b}`); blank lines dropped. */
export function textToGlobs(text: string): string[] {
  return text
    .split("\n")
    .map((g) => g.trim())
    .filter((g) => g !== "");
}

/** A path from the top of the file system (Unix, or a Windows drive or share). */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}

function parts(path: string): string[] {
  return path.split(/[\\/]+/).filter((p) => p !== "");
}

/** Whether one folder is the other or inside it (their files would be sent twice). */
export function overlaps(a: string, b: string): boolean {
  const [pa, pb] = [parts(a), parts(b)];
  const n = Math.min(pa.length, pb.length);
  return pa.slice(0, n).every((p, i) => p === pb[i]);
}

/**
 * Adds `typed` to the list being edited, or says why not (the app checks again when saving,
 * and whether the folder exists).
 */
export function addFolder(list: FolderDraft[], typed: string): { list: FolderDraft[] } | { error: string } {
  const path = typed.trim();
  if (path === "") return { error: "Enter the folder's path, or choose it." };
  if (!isAbsolute(path)) return { error: `${path}: give the full path of the folder.` };
  const other = list.find((f) => overlaps(f.path, path));
  if (other) {
    return {
      error:
        other.path === path || parts(other.path).join("/") === parts(path).join("/")
          ? `${path} is watched already.`
          : `${path} overlaps ${other.path}, which is watched already.`,
    };
  }
  return { list: [...list, toDraft(newFolder(path))] };
}

/** The last part of a folder's path, for short labels. */
export function folderName(path: string): string {
  const all = parts(path);
  return all.length > 0 ? all[all.length - 1] : path;
}

export interface StatusLine {
  kind: "ok" | "problem" | "muted";
  text: string;
}

/** How a folder's state reads on its settings entry. */
export function statusLine(folder: WatchedFolder, status: WatchStatus | undefined): StatusLine {
  if (!folder.enabled) return { kind: "muted", text: "Paused: new files are not sent." };
  if (!status) return { kind: "muted", text: "Not watched yet: save to start." };
  const sent = status.sent === 1 ? "1 file sent" : `${status.sent} files sent`;
  switch (status.state) {
    case "starting":
      return { kind: "muted", text: "Starting…" };
    case "watching":
      return { kind: "ok", text: `Watching: new files are sent when complete. ${sent} since it started.` };
    case "unavailable":
      return {
        kind: "problem",
        text: `Cannot watch this folder: ${status.problem ?? "unknown reason"}. Watching resumes by itself when the folder is back.`,
      };
    case "paused":
      return { kind: "muted", text: "Paused: new files are not sent." };
  }
}

/** One line for the main window: how many folders are watched, and how many have a problem. */
export function watchSummary(statuses: WatchStatus[]): StatusLine | null {
  if (statuses.length === 0) return null;
  const watching = statuses.filter((s) => s.state === "watching").length;
  const problems = statuses.filter((s) => s.state === "unavailable").length;
  const folders = (n: number) => (n === 1 ? "1 folder" : `${n} folders`);
  let text = `Watching ${folders(watching)}`;
  if (problems > 0) text += `; ${folders(problems)} cannot be watched (see Settings)`;
  return { kind: problems > 0 ? "problem" : "ok", text: text + "." };
}
