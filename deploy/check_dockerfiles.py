#!/usr/bin/env python3
"""Checks the Dockerfiles without docker: multi-stage (a build stage and a runtime
stage), the runtime stage runs as a non-root user with the data directory as a volume,
the entrypoint is exec form (treecast is PID 1 and receives SIGTERM), and every file
the build copies from the context exists."""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(text):
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            yield op.upper(), rest.strip()


def check(path):
    ins = list(instructions(path.read_text()))
    errors = []
    stages = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    if len(stages) < 2:
        errors.append("not a multi-stage build")
    final = ins[stages[-1]:] if stages else ins
    users = [rest for op, rest in final if op == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append("the runtime stage does not switch to a non-root user")
    if not any(op == "VOLUME" and "/var/lib/treecast" in rest for op, rest in final):
        errors.append("no VOLUME for the data directory /var/lib/treecast")
    if not any(op == "ENV" and "TREECAST_DATA_DIR=/var/lib/treecast" in rest for op, rest in final):
        errors.append("TREECAST_DATA_DIR is not set to the volume")
    ep = [rest for op, rest in final if op == "ENTRYPOINT"]
    try:
        if not ep or not isinstance(json.loads(ep[-1]), list):
            raise ValueError
    except ValueError:
        errors.append("ENTRYPOINT is not in exec form (JSON array)")
    for op, rest in final:
        if op == "COPY" and "--from=" not in rest:
            errors.append(f"the runtime stage copies from the context: COPY {rest}")
    for op, rest in ins:
        if op == "COPY" and "--from=" not in rest:
            for src in rest.split()[:-1]:
                if not (ROOT / src).exists():
                    errors.append(f"COPY source {src} does not exist")
    for e in errors:
        print(f"error: {path}: {e}", file=sys.stderr)
    if not errors:
        print(f"{path.relative_to(ROOT)}: {len(stages)} stages, non-root user {users[-1]}, "
              f"exec-form entrypoint")
    return not errors


if __name__ == "__main__":
    ok = all([check(Path(p).resolve()) for p in sys.argv[1:]])
    sys.exit(0 if ok else 1)
