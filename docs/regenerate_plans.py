#!/usr/bin/env python3
"""Re-runs every `$ tessera plan ...` block in docs/*.md and replaces its output.

Usage (from the repository root): python3 docs/regenerate_plans.py
It builds the CLI once (release) and rewrites the blocks in place; review the diff.
"""
import pathlib
import re
import shlex
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parent.parent
subprocess.run(["cargo", "build", "--release", "-q", "--bin", "tessera"], cwd=root, check=True)
binary = root / "target" / "release" / "tessera"
block = re.compile(r"```\n\$ (tessera plan [^\n]*)\n.*?```", re.S)


def rerun(match):
    cmd = shlex.split(match.group(1))
    out = subprocess.run([str(binary)] + cmd[1:], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{match.group(1)} failed:\n{out.stderr}")
    # Search times vary from run to run; keep the rest exact.
    text = re.sub(r"search +[0-9.]+ ms", "search   <time> ms", out.stdout)
    return f"```\n$ {match.group(1)}\n{text}```"


for page in sorted((root / "docs").glob("*.md")):
    old = page.read_text()
    new = block.sub(rerun, old)
    if new != old:
        page.write_text(new)
        print(f"updated {page.relative_to(root)}")
