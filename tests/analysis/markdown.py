"""Reading the report's Markdown tables in tests, independent of column padding."""
import re

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_RULE = re.compile(r"\|[-:|]+\|")


def unpadded(text: str) -> str:
    """`text` with every table row's cells stripped of the padding that aligns the columns.

    "| a     | b   |" becomes "| a | b |", so a test can name a row by its cells
    whatever the widths of the other rows in its table; the rule under the header
    ("|-----|-----|") is left as it is.
    """
    lines = []
    for line in text.splitlines():
        if line.startswith("|") and line.endswith("|") and not _RULE.fullmatch(line):
            cells = [c.strip() for c in _UNESCAPED_PIPE.split(line[1:-1])]
            line = "| " + " | ".join(cells) + " |"
        lines.append(line)
    return "\n".join(lines)
