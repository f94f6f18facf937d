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


def claim_verdicts(text: str) -> list[str]:
    """The verdict of each row of a ``results.md``'s claims section, in order."""
    section = text.split("## The paper's claims", 1)[1]
    return [row[2].strip("*") for row in table_rows(section, "| claim | source |")]
