"""Numbers as text for reports and logs: one formatter and one Markdown table writer."""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["MISSING", "format_value", "markdown_table"]

#: What a missing value (None, NaN) prints as.
MISSING = "–"


def format_value(value, digits: int = 2) -> str:
    """A float with ``digits`` decimals, :data:`MISSING` for None or NaN, anything else by ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], digits: int = 2) -> list[str]:
    """Lines of a Markdown table (and a blank line); cells that are not strings go through
    :func:`format_value`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(v if isinstance(v, str) else format_value(v, digits) for v in row) + " |"
              for row in rows]
    return lines + [""]
