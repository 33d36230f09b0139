"""Markdown tables for a grid's results.md."""

from __future__ import annotations


def markdown_table(caption: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a table after a blank line, its caption and another blank line."""
    lines = ["", caption, "", f"| {' | '.join(columns)} |", "|" + " --- |" * len(columns)]
    return lines + [f"| {' | '.join(row)} |" for row in rows]
