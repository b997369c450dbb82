#!/usr/bin/env python3
"""Checks that the herald crate's modules import only downward.

Reads every `crate::...` path in crates/herald/src (test modules left out) and
fails when a module names one in a higher layer, or when modules import each other
in a cycle. A configuration section (`X/config.rs`) belongs to its module's layer;
`config.rs` composes all of them, so it may name every section. A new top-level
module must be placed in LAYERS, or this fails. docs/ARCHITECTURE.md draws the same
layers.
"""
import os
import re
import sys
from collections import defaultdict

# Bottom to top. A module may import its own layer (without a cycle) and those below.
LAYERS = [
    ["error", "params", "destination", "message"],
    ["ops"],
    ["auth", "cluster"],
    ["admission", "broker"],
    ["router"],
    ["handler"],
    ["notify"],
    ["config"],
    ["node"],
    ["session"],
    ["transport"],
    ["apps", "web", "fuzzing"],
    ["http"],
    ["server"],
]

ROOT_REEXPORTS = {"Config": "config", "Server": "server"}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "herald", "src")
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*mod \w+ \{")
CRATE_PATH = re.compile(r"crate::(\w+(?:::\w+)*)")
CRATE_GROUP = re.compile(r"use crate::\{([^}]*)\}")
OWN_SECTION = re.compile(r"\b(?:super|self)::config::|^use config::", re.M)


def unit_of(rel):
    """The importing unit of a file: its top-level module, or `X::config`."""
    if rel.endswith("/config.rs"):
        return rel[: -len("/config.rs")].replace("/", "::") + "::config"
    return rel.split("/")[0].removesuffix(".rs")


def target_of(path):
    parts = path.split("::")
    if "config" in parts[1:]:
        return "::".join(parts[: parts.index("config") + 1])
    return parts[0]


def layer(unit):
    top = unit.split("::")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def main():
    edges = defaultdict(set)
    where = defaultdict(set)
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs") or name == "lib.rs":
                continue
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, ROOT)
            if name == "tests.rs":
                continue
            src = open(path, encoding="utf-8").read()
            test = TEST_MODULE.search(src)
            if test:
                src = src[: test.start()]
            src = re.sub(r"//.*", "", src)
            unit = unit_of(rel)
            targets = {target_of(m) for m in CRATE_PATH.findall(src)}
            for group in CRATE_GROUP.findall(src):
                targets |= {t.strip().split("::")[0] for t in group.split(",") if t.strip()}
            # The crate root's re-exports stand for their modules.
            targets = {ROOT_REEXPORTS.get(t, t) for t in targets}
            if OWN_SECTION.search(src) and not rel.endswith("/config.rs") and "/" in rel:
                targets.add(os.path.dirname(rel).replace("/", "::") + "::config")
            for t in targets:
                if t != unit and t.split("::")[0] != unit:
                    edges[unit].add(t)
                    where[(unit, t)].add(rel)
    problems = []
    units = set(edges) | {t for ts in edges.values() for t in ts}
    for u in sorted(units):
        if layer(u) is None:
            problems.append(f"module '{u}' is in no layer: place it in LAYERS ({__file__})")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            la, lb = layer(a), layer(b)
            if la is None or lb is None or lb <= la:
                continue
            if a == "config" and b.endswith("::config"):
                continue
            files = ", ".join(sorted(where[(a, b)]))
            problems.append(f"{a} (layer {la}) imports {b} (layer {lb}), above it: {files}")
    for cycle in cycles(edges):
        problems.append("import cycle: " + " -> ".join(cycle + [cycle[0]]))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"layers: {len(units)} modules, {sum(map(len, edges.values()))} imports, all downward")
    return 0


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    sys.exit(main())
