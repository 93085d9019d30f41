"""``report.tex``: the report's tables as booktabs LaTeX, to ``\\input`` in a paper.

The file holds one ``table`` environment per table, under the report's section headings;
the document must load ``booktabs`` (``\\usepackage{booktabs}``). Every value is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from simulator.report.markdown import Block, Table

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_SYMBOLS = {"±": r"$\pm$", "–": "--", "−": "--", "≤": r"$\le$", "≥": r"$\ge$"}
_CODE = re.compile(r"`([^`]*)`")


def escape(text: str) -> str:
    """``text`` safe in LaTeX: special characters escaped, ``±`` as ``$\\pm$``, Markdown's
    `code` as ``\\texttt``."""
    out = "".join(_SPECIAL.get(c, _SYMBOLS.get(c, c)) for c in str(text))
    return _CODE.sub(r"\\texttt{\1}", out)


def table(t: Table) -> list[str]:
    columns = "l" * len(t.header)
    row = " & ".join
    return [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        f"\\caption{{{escape(t.title)}}}",
        f"\\begin{{tabular}}{{{columns}}}",
        r"\toprule",
        row(escape(h) for h in t.header) + r" \\",
        r"\midrule",
        *(row(escape(c) for c in cells) + r" \\" for cells in t.rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
        "",
    ]


def to_latex(blocks: Sequence[Block], command: str) -> str:
    """The headings and the tables of ``blocks``; paragraphs and images stay in report.md."""
    lines = [
        "% Oleander report tables (booktabs): \\usepackage{booktabs}, then \\input{report.tex}.",
        f"% Produced by: {command}",
        "",
    ]
    heading = ""
    for block in blocks:
        if block.kind == "h2":
            heading = block.text  # written before its first table: no empty sections
        elif block.kind == "table" and block.table is not None:
            if heading:
                lines += [f"\\section*{{{escape(heading)}}}", ""]
                heading = ""
            lines += table(block.table)
    return "\n".join(lines).rstrip() + "\n"
