#!/usr/bin/env python3
"""Lists source files of the workspace's crates (`src/`) longer than a limit (default 800
lines), except the conformance suites. Exit 1 when one is over.

    python3 scripts/file-length.py [LIMIT]
"""
import pathlib
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 800
root = pathlib.Path(__file__).resolve().parent.parent
over = []
for path in sorted(root.glob('**/src/**/*.rs')):
    rel = path.relative_to(root)
    if 'target' in rel.parts or rel.name == 'conformance.rs' or str(rel).startswith('.'):
        continue
    n = len(path.read_text().split('\n')) - 1
    if n > LIMIT:
        over.append((n, str(rel)))
for n, rel in sorted(over, reverse=True):
    print(f'{n:5} lines  {rel}')
if over:
    print(f'{len(over)} file(s) over {LIMIT} lines', file=sys.stderr)
    sys.exit(1)
print(f'no source file over {LIMIT} lines')
