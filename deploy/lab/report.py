#!/usr/bin/env python3
"""The lab's report: reads the viewers' --report JSON and the scenario from a lab run's
output directory, prints a table and checks the lab's claims. Exit status 1 when a check
fails.

Checks:
- every viewer ran to the end and played the whole time: no stall (render gap over
  100 ms), and about as many frames as its watch time allows;
- no viewer lost a frame, through the kill and the drain;
- the killed relay and the drained relay had children (the scenario exercised repair and
  handover), and at the end no viewer is below either of them;
- the drained relay left cleanly (exit 0).
"""
import json
import re
import sys
from pathlib import Path


def dur_s(s):
    m = re.fullmatch(r"([0-9.]+)(ms|s)", s)
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def main(out):
    out = Path(out)
    sc = json.loads((out / "scenario.json").read_text())
    addrs = dict(line.split() for line in (out / "addresses").read_text().splitlines())
    ids = {name: a.split("@")[0] for name, a in addrs.items()}
    name_of = {i: n for n, i in ids.items()}
    exits = dict(kv.split("=") for kv in sc["viewers_exit"].split())
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    fps = 30
    buffer = dur_s(sc["buffer"])
    want = 0.9 * (sc["secs"] - buffer - 1.0) * fps
    print()
    print(f"treecast lab: {len(exits)} viewers, {sc['secs']} s each, links {sc['delay']} "
          f"one-way per sender and {sc['loss']} loss, playout buffer {sc['buffer']}")
    print(f"  machine load {sc['load'][0]} -> {sc['load'][1]} on {sc['cpus']} CPUs "
          f"(a starved player counts gaps over 100 ms as stalls)")
    print(f"  killed  {sc['killed']} with {sc['killed_children']} children (SIGKILL)")
    print(f"  drained {sc['drained']} with {sc['drained_children']} children "
          f"(SIGTERM, left in {sc['drain_ms']} ms, exit {sc['drain_exit']})")
    print()
    hdr = f"{'viewer':8} {'first parent':13} {'last parent':12} {'frames':>6} {'stalls':>6} " \
          f"{'max gap ms':>10} {'lost':>4} {'lat p50':>7} {'lat p99':>7} {'1st frame ms':>12}"
    print(hdr)
    print("-" * len(hdr))
    for v in sorted(exits):
        first = "?"
        lines = (out / f"{v}.out").read_text().splitlines()
        for line in lines:
            if line.strip().startswith("parent:"):
                first = name_of.get(line.split()[-1].split("@")[0], "?")
        path = out / f"{v}.json"
        check(exits[v] == "0", f"{v} exited with {exits[v]}")
        if not path.exists():
            check(False, f"{v} wrote no report")
            continue
        r = json.loads(path.read_text())
        parent = (r.get("node") or {}).get("parent") or ""
        last = name_of.get(parent.split("@")[0], parent[:12] or "-")
        lat = r.get("latency_ms") or {}
        print(f"{v:8} {first:13} {last:12} {r['frames_rendered']:>6} {r['stalls']:>6} "
              f"{r['max_gap_ms']:>10.0f} {r['frames_lost']:>4} {lat.get('p50', 0):>7.0f} "
              f"{lat.get('p99', 0):>7.0f} {r['first_frame_ms']:>12.0f}")
        check(r["stalls"] == 0, f"{v} stalled {r['stalls']} times (max gap {r['max_gap_ms']:.0f} ms)")
        check(r["frames_lost"] == 0, f"{v} lost {r['frames_lost']} frames")
        check(r["frames_rendered"] >= want,
              f"{v} rendered {r['frames_rendered']} frames, want at least {want:.0f}")
        check(last not in (sc["killed"], sc["drained"]),
              f"{v} still names {last} as its parent at the end")
    check(sc["killed_children"] > 0, f"the killed relay {sc['killed']} had no children")
    check(sc["drained_children"] > 0, f"the drained relay {sc['drained']} had no children")
    check(sc["drain_exit"] == 0, f"the drained relay exited with {sc['drain_exit']}")
    print()
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        print(f"lab FAILED: {len(failures)} checks (output in {out})")
        return 1
    print(f"lab: every viewer played the whole time with no stall and no lost frame "
          f"through a relay crash and a drain (output in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
