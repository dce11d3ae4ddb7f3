import { describe, expect, test } from "vitest";
import { formatBytes, formatEta, formatSpeed, percent } from "./format";

describe("formatBytes", () => {
  test.each([
    [0, "0 B"],
    [1, "1 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [1536, "1.5 KiB"],
    [10 * 1024 * 1024 - 1, "10.0 MiB"],
    [99.94 * 1024 * 1024, "99.9 MiB"],
    [99.96 * 1024 * 1024, "100 MiB"],
    [512 * 1024 * 1024, "512 MiB"],
    [1024 * 1024 * 1024 - 1, "1.0 GiB"],
    [4 * 1024 ** 3, "4.0 GiB"],
    [5 * 1024 ** 4, "5.0 TiB"],
  ])("%d bytes read %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  test("nonsense reads as a dash", () => {
    expect(formatBytes(-1)).toBe("—");
    expect(formatBytes(Number.NaN)).toBe("—");
  });
});

describe("formatSpeed", () => {
  test("a moving transfer shows bytes per second", () => {
    expect(formatSpeed(12.3 * 1024 * 1024)).toBe("12.3 MiB/s");
    expect(formatSpeed(800)).toBe("800 B/s");
  });
  test("nothing moving shows a dash, not 0 B/s", () => {
    expect(formatSpeed(0)).toBe("—");
  });
});

describe("formatEta", () => {
  test.each([
    [0, "0 s"],
    [0.2, "1 s"],
    [59, "59 s"],
    [60, "1 min 00 s"],
    [245, "4 min 05 s"],
    [3600, "1 h 00 min"],
    [7620, "2 h 07 min"],
    [3 * 86400 + 4 * 3600 + 59, "3 d 4 h"],
  ])("%d s reads %s", (secs, text) => {
    expect(formatEta(secs)).toBe(text);
  });
  test("unknown reads as a dash", () => {
    expect(formatEta(null)).toBe("—");
    expect(formatEta(undefined)).toBe("—");
  });
});

describe("percent", () => {
  test("never 100 before the last byte", () => {
    expect(percent(999, 1000)).toBe(99);
    expect(percent(1000, 1000)).toBe(100);
    expect(percent(0, 1000)).toBe(0);
  });
  test("an empty file is done at once", () => {
    expect(percent(0, 0)).toBe(100);
  });
});
