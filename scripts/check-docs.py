#!/usr/bin/env python3
"""Checks the book (docs/) and the top-level Markdown files without building the book.

- every chapter named in docs/src/SUMMARY.md exists, and every page under docs/src/ is in it;
- every relative link and image, in the book and in README.md, SECURITY.md and BENCHMARKS.md,
  names a file that exists, and every #anchor a heading of that page (ids as mdBook and
  GitHub make them); the book links to no Markdown page outside it (mdBook would turn the
  link into one to a .html page that does not exist);
- every {{#include ...}} names a file that exists;
- README.md stays at most 200 lines.

mdBook itself is a large compile, too slow for CI; this catches what breaks in practice.
Exits 1 with one line per problem.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "docs" / "src"
TOP = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "BENCHMARKS.md"]
README_MAX_LINES = 200

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
INCLUDE = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^}:\s]+)[^}]*\}\}")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
problems = []


def prose(text):
    """The lines outside fenced code blocks, with inline code removed: (number, line)."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        yield number, re.sub(r"(`+)(?:(?!\1).)+?\1", "", line)


def anchor(text):
    """A heading's id, as mdBook's normalize_id and GitHub make it."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    text = text.replace("`", "")
    return "".join(
        "-" if c.isspace() else c.lower() for c in text if c.isalnum() or c in "_-" or c.isspace()
    )


_anchors = {}


def anchors(path):
    if path not in _anchors:
        seen = {}
        ids = set()
        for _, line in prose(path.read_text()):
            m = HEADING.match(line)
            if m:
                base = anchor(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                ids.add(base if n == 0 else f"{base}-{n}")
        _anchors[path] = ids
    return _anchors[path]


def check_links(path):
    text = path.read_text()
    for number, line in prose(text):
        where = f"{path.relative_to(ROOT)}:{number}"
        for m in INCLUDE.finditer(line):
            if not (path.parent / m.group(1)).is_file():
                problems.append(f"{where}: {{{{#include {m.group(1)}}}}}: no such file")
        for m in LINK.finditer(line):
            target = m.group(1)
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto:, ...: not checked (no network)
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{where}: link to {target}: {file_part} does not exist")
                continue
            if dest.suffix == ".md" and path.is_relative_to(SRC) and not dest.is_relative_to(SRC):
                problems.append(f"{where}: link to {target}: mdBook makes it a link to a .html page "
                                "outside the book, which does not exist; name the file in prose")
                continue
            if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                problems.append(f"{where}: link to {target}: {dest.relative_to(ROOT)} has no heading #{fragment}")


def main():
    summary = SRC / "SUMMARY.md"
    listed = set()
    for number, line in prose(summary.read_text()):
        for m in LINK.finditer(line):
            target = m.group(1)
            if not target:
                problems.append(f"docs/src/SUMMARY.md:{number}: a draft chapter (empty link)")
                continue
            if not (SRC / target).is_file():
                problems.append(f"docs/src/SUMMARY.md:{number}: {target} does not exist")
            listed.add((SRC / target).resolve())
    for page in sorted(SRC.rglob("*.md")):
        if "node_modules" in page.parts:
            continue
        if page != summary and page.resolve() not in listed:
            problems.append(f"{page.relative_to(ROOT)}: not in SUMMARY.md")
        check_links(page)
    for page in TOP:
        check_links(page)
    lines = (ROOT / "README.md").read_text().count("\n")
    if lines > README_MAX_LINES:
        problems.append(f"README.md: {lines} lines, more than {README_MAX_LINES}: move the detail to the book")
    for p in problems:
        print(p)
    if problems:
        sys.exit(f"check-docs: {len(problems)} problem(s)")
    print(f"check-docs: {len(listed)} chapters and {len(TOP)} top-level pages, every link resolves")


if __name__ == "__main__":
    main()
