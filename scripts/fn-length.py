#!/usr/bin/env python3
"""Lists production functions longer than a limit (default 100 lines).

Production code is every `src/` file of the workspace except the conformance suites,
`#[cfg(test)]` modules and the unit-test files they load (`tests.rs`). Exit 1 when a function is over the limit.

    python3 scripts/fn-length.py [LIMIT]
"""
import pathlib
import re
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 100
FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')
root = pathlib.Path(__file__).resolve().parent.parent
over = []
for path in sorted(root.glob('**/src/**/*.rs')):
    rel = path.relative_to(root)
    if 'target' in rel.parts or rel.name in ('conformance.rs', 'tests.rs') or str(rel).startswith('.'):
        continue
    lines = path.read_text().split('\n')
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith('#[cfg(test)]'):
            break  # test modules sit at the end of a file
        m = FN.match(line)
        if not m or line.rstrip().endswith(';'):
            i += 1
            continue
        # Find the body: count braces from the first `{` after the signature.
        depth, start, j, opened = 0, i, i, False
        while j < len(lines):
            code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split('//')[0])
            # Character literals (`b'{'`, `'}'`) hold braces too.
            code = re.sub(r"b?'(\\.|[^'\\])'", "''", code)
            for ch in code:
                if ch == '{':
                    depth += 1
                    opened = True
                elif ch == '}':
                    depth -= 1
            if opened and depth <= 0:
                break
            if not opened and code.rstrip().endswith(';'):
                break
            j += 1
        n = j - start + 1
        if n > LIMIT:
            over.append((n, f'{rel}:{start + 1}', m.group(6)))
        i = j + 1 if opened else i + 1
for n, where, name in sorted(over, reverse=True):
    print(f'{n:5} lines  {where}  fn {name}')
if over:
    print(f'{len(over)} function(s) over {LIMIT} lines', file=sys.stderr)
    sys.exit(1)
print(f'no production function over {LIMIT} lines')
