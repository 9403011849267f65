#!/usr/bin/env python3
"""Fails when any package in the dependency graph (all features, every target) is not under a
license in deny.toml's allow list — in particular GPL, AGPL or LGPL.

deny.toml holds the policy for `cargo deny check licenses`; this script applies the same allow
list with nothing but cargo metadata, so the full test suite needs no extra tool to enforce it.
"""
import json
import re
import subprocess
import sys
import tomllib

with open("deny.toml", "rb") as f:
    allowed = set(tomllib.load(f)["licenses"]["allow"])

meta = json.loads(
    subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]
    )
)
used = {node["id"] for node in meta["resolve"]["nodes"]}


def acceptable(expr: str) -> bool:
    """An SPDX expression passes when one OR-branch has every AND-term allowed."""
    expr = expr.replace("/", " OR ")  # old-style "MIT/Apache-2.0"
    for branch in re.split(r"\s+OR\s+", expr.replace("(", " ").replace(")", " ")):
        terms = [t.strip() for t in re.split(r"\s+AND\s+", branch) if t.strip()]
        if terms and all(t in allowed for t in terms):
            return True
    return False


bad = []
for pkg in meta["packages"]:
    if pkg["id"] not in used or pkg["source"] is None:
        continue
    lic = pkg.get("license") or ""
    if not lic or not acceptable(lic):
        bad.append(f"{pkg['name']} {pkg['version']}: {lic or 'no license field'}")

if bad:
    print("licenses outside deny.toml's allow list:", *bad, sep="\n  ")
    sys.exit(1)
print(f"licenses: {len(used)} packages, all within deny.toml's allow list")
