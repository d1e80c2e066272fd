#!/usr/bin/env python3
"""Checks that the crate's modules depend in one direction only.

Every top-level module of `src/` has a level (the table in `src/lib.rs`). A module may use
modules on its own level or below; a path into a higher level is a back-edge and fails the
check. Paths are read from code (comments and doc comments are skipped): `use crate::…` lines,
grouped or not, and `crate::…` paths anywhere in an expression or type. A path to an item at
the crate root (`crate::Authenticator`) is refused too, since it hides which module it leans
on: name the module (`crate::authenticator::Authenticator`). `src/lib.rs` itself is exempt.

    python3 scripts/check_layers.py            # check src/
    python3 scripts/check_layers.py --self-test  # also prove it fails on an added back-edge
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path

# Low to high. Keep in step with the table at the top of src/lib.rs.
LEVELS = {
    "error": 1,
    "time": 1,
    "telemetry": 1,
    "jose": 2,
    "keys": 3,
    "token": 4,
    "validate": 5,
    "dpop": 5,
    "introspection": 5,
    "authenticator": 6,
    "token_source": 6,
    "dangerous": 6,
    "http": 7,
    "extract": 8,
    "openapi": 8,
    "grpc": 8,
    "server": 9,
}

PATH = re.compile(r"\bcrate::(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*)", re.S)


def module_of(src: Path, file: Path) -> str:
    """The top-level module a file belongs to (`src/keys/remote.rs` -> `keys`)."""
    rel = file.relative_to(src)
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) == 1 else rel.parts[0]


def code_of(text: str) -> str:
    """The text with comments and string literals blanked, line structure kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' or text.startswith('r#"', i) or text.startswith('r"', i):
            # A (raw) string literal: blank its content.
            if c == "r":
                hashes = len(text[i + 1 :]) - len(text[i + 1 :].lstrip("#"))
                close = '"' + "#" * hashes
                start = i + 2 + hashes
                j = text.find(close, start)
                j = n if j < 0 else j + len(close)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4]):
            # A char literal such as '"' (not a lifetime).
            m = re.match(r"'(\\.|[^\\'])'", text[i : i + 4])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def targets(path: str) -> list[str]:
    """The top-level names a `crate::` path reaches: one, or several for a `{…}` group."""
    if not path.startswith("{"):
        return [path]
    names, depth, token = [], 0, ""
    for ch in path[1:-1]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            names.append(token)
            token = ""
            continue
        token += ch
    names.append(token)
    return [re.split(r"\W", n.strip(), maxsplit=1)[0] for n in names if n.strip()]


def check(src: Path) -> list[str]:
    problems = []
    for file in sorted(src.rglob("*.rs")):
        if file == src / "lib.rs":
            continue
        module = module_of(src, file)
        if module not in LEVELS:
            problems.append(f"{file}: module `{module}` has no level in scripts/check_layers.py")
            continue
        level = LEVELS[module]
        code = code_of(file.read_text())
        for match in PATH.finditer(code):
            line = code.count("\n", 0, match.start()) + 1
            for target in targets(match.group(1)):
                if target in ("self", "super"):
                    continue
                if target not in LEVELS:
                    problems.append(
                        f"{file}:{line}: `crate::{target}` is a path to the crate root; "
                        f"name the module it lives in"
                    )
                elif LEVELS[target] > level:
                    problems.append(
                        f"{file}:{line}: `{module}` (level {level}) uses `{target}` "
                        f"(level {LEVELS[target]}): a back-edge"
                    )
    return problems


def self_test(src: Path) -> None:
    """Adds a back-edge to a copy of `src/` and requires the check to catch it."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy)
        error = copy / "error.rs"
        error.write_text(error.read_text() + "\nuse crate::http::layer::BearerAuthLayer;\n")
        caught = [p for p in check(copy) if "error.rs" in p and "back-edge" in p]
        if not caught:
            sys.exit("self-test: a back-edge from `error` to `http` went unnoticed")
        print(f"self-test: an added back-edge is refused: {caught[0].replace(str(copy), 'src')}")


def main() -> None:
    src = Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"layer check: {len(problems)} problem(s)")
    files = sum(1 for _ in src.rglob("*.rs"))
    print(f"layer check: {files} files, every `crate::` path points to its own level or below")
    if "--self-test" in sys.argv[1:]:
        self_test(src)


if __name__ == "__main__":
    main()
