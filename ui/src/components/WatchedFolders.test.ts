// The watched-folders section rendered to HTML (Svelte's server renderer: no browser needed),
// checked for what a keyboard or screen-reader user relies on.
import { describe, expect, test } from "vitest";
import { render } from "svelte/server";
import WatchedFolders from "./WatchedFolders.svelte";
import type { WatchStatus } from "../lib/bindings";
import { newFolder, toDraft, type FolderDraft } from "../lib/watched";

function html(folders: FolderDraft[], statuses: WatchStatus[] = []): string {
  return render(WatchedFolders, { props: { folders, statuses, onPick: async () => null } }).body;
}

/** Every `<label for=…>` names an element that exists, and every field has a label. */
function checkLabels(body: string) {
  const ids = new Set([...body.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
  const targets = [...body.matchAll(/<label[^>]*\sfor="([^"]+)"/g)].map((m) => m[1]);
  for (const target of targets) expect(ids, `label for ${target}`).toContain(target);
  const fields = [...body.matchAll(/<(input|select|textarea)\b([^>]*)>/g)];
  for (const [, , attrs] of fields) {
    const id = /\sid="([^"]+)"/.exec(attrs)?.[1];
    const wrapped = /type="checkbox"/.test(attrs); // inside its <label class="check">
    expect(wrapped || (id !== undefined && targets.includes(id)), `a label for <${attrs}>`).toBe(true);
  }
}

describe("WatchedFolders", () => {
  test("with no folder it says so, and the add field is labelled", () => {
    const body = html([]);
    expect(body).toContain("No folder is watched.");
    expect(body).toContain('id="watch-pick"');
    checkLabels(body);
  });

  test("each folder is a labelled group with its settings and a named Remove button", () => {
    const scans = toDraft({ ...newFolder("/home/me/Scans"), afterUpload: "move", moveTo: "done" });
    const inbox = toDraft(newFolder("/home/me/Inbox"));
    const body = html([scans, inbox]);
    expect(body.match(/<fieldset/g)).toHaveLength(2);
    expect(body).toContain("<legend><code>/home/me/Scans</code></legend>");
    expect(body).toContain('aria-label="Stop watching and remove /home/me/Inbox"');
    expect(body).toContain('id="watch-0-move-to"');
    expect(body).not.toContain('id="watch-1-move-to"'); // only with "move"
    checkLabels(body);
  });

  test("a folder that cannot be watched shows why, as an alert", () => {
    const status: WatchStatus = {
      path: "/home/me/Scans",
      state: "unavailable",
      problem: "the folder is gone (deleted, renamed or unmounted)",
      sent: 0,
    };
    const body = html([toDraft(newFolder("/home/me/Scans"))], [status]);
    expect(body).toMatch(/<p class="watch-status problem"[^>]*data-state="unavailable"[^>]*role="alert"/);
    expect(body).toContain("the folder is gone (deleted, renamed or unmounted)");
  });

  test("the policy's folders are shown locked; locked own folders cannot be added or changed", () => {
    const managed = [newFolder("/srv/scans")];
    const props = { folders: [toDraft(newFolder("/home/me/Inbox"))], statuses: [], managed,
      managedNote: "Set by your organisation (policy.json)", onPick: async () => null };
    const open = render(WatchedFolders, { props }).body;
    expect(open).toContain('data-path="/srv/scans" data-managed="true"');
    expect(open).toContain("Set by your organisation (policy.json): always watched");
    expect(open).toContain('<span class="sr-only">(locked)</span>');
    expect(open).toContain('id="watch-0-remove"');
    expect(open).toContain('id="watch-path"');
    expect(open).not.toContain("No folder is watched.");
    checkLabels(open);

    const locked = render(WatchedFolders, {
      props: { ...props, lockedNote: "Set by your organisation (policy.json)" },
    }).body;
    expect(locked).toContain('id="watched-locked"');
    expect(locked).not.toContain('id="watch-path"');
    expect(locked).toMatch(/<fieldset class="watched-folder" data-path="\/home\/me\/Inbox" disabled/);
  });
});
