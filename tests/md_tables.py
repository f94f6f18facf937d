"""Reading the Markdown tables of the experiments' ``results.md`` in tests."""

from __future__ import annotations


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """Body rows of the first Markdown table whose header starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows
