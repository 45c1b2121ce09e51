#!/usr/bin/env python3
"""Checks that the modules of each library crate import one another without a circle.

A crate's modules are its top-level modules (`src/<name>.rs` or `src/<name>/`). Module A
imports module B when a file of A names `crate::B` (in a `use`, a path or a doc-free line) or,
at the top level, `super::B`. A circle (A imports B, and B, through any chain, imports A) is
printed with its members and the lines that close it; exit 1 when there is one.

    python3 scripts/layers.py            # every crate of the workspace
    python3 scripts/layers.py --graph    # also print each crate's import arrows
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
PATH = re.compile(r'\b(crate|super)::(\{[^}]*\}|\w+)')


def modules(src):
    names = set()
    for p in src.iterdir():
        if p.suffix == '.rs' and p.stem not in ('lib', 'main'):
            names.add(p.stem)
        elif p.is_dir():
            names.add(p.name)
    return names


def owner(src, path):
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix('.rs') if rel.parts else None


def code_lines(text):
    """The lines of `text` outside comments and `#[cfg(test)]` tails."""
    for n, line in enumerate(text.split('\n'), 1):
        s = line.strip()
        if s.startswith('#[cfg(test)]'):
            return
        if s.startswith('//'):
            continue
        yield n, line.split('//')[0]


def arrows(src):
    mods = modules(src)
    out = {}
    for path in sorted(src.rglob('*.rs')):
        a = owner(src, path)
        if a in (None, 'lib', 'main'):
            continue
        top = path.parent == src
        for n, line in code_lines(path.read_text()):
            for m in PATH.finditer(line):
                if m.group(1) == 'super' and not top:
                    continue
                targets = m.group(2).strip('{}').split(',')
                for t in targets:
                    b = t.strip().split('::')[0].strip()
                    if b in mods and b != a:
                        out.setdefault((a, b), f'{path.relative_to(root)}:{n}')
    return out


def circles(edges):
    """Strongly connected components with more than one member (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


failed = False
for manifest in sorted(root.glob('*/Cargo.toml')) + [root / 'Cargo.toml']:
    src = manifest.parent / 'src'
    if not (src / 'lib.rs').exists():
        continue
    edges = arrows(src)
    crate = manifest.parent.name if manifest.parent != root else 'flowfail'
    if '--graph' in sys.argv:
        for (a, b) in sorted(edges):
            print(f'{crate}: {a} -> {b}')
    for comp in circles(edges):
        failed = True
        print(f'{crate}: import circle through {", ".join(comp)}')
        for (a, b), where in sorted(edges.items()):
            if a in comp and b in comp:
                print(f'    {a} -> {b}   ({where})')
if failed:
    sys.exit(1)
print('no import circle between the modules of any crate')
