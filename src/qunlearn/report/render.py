"""Rendering (markdown, LaTeX) and writing of the declared tables and figures: every file goes through
``runtime.atomic_file``, so a killed job never leaves a half-written table or figure."""

from __future__ import annotations

import math

import pandas as pd

from .. import runtime
from . import catalog


def latex_escape(text: str) -> str:
    """Plain text (a caption) as LaTeX: a % would comment out the rest of the line."""
    repl = {
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
    }
    return "".join(repl.get(c, c) for c in text)


def to_latex(df: pd.DataFrame, caption: str, label: str, floatfmt: str = "{:.1f}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "--" if math.isnan(v) else floatfmt.format(v)
        return str(v).replace("_", r"\_").replace("~", r"\textasciitilde{}")

    cols = "l" * sum(df.dtypes == object) + "r" * sum(df.dtypes != object)  # noqa: E721 (pandas, elementwise)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(cell(c) for c in df.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.1f}") -> str:
    """Markdown with floats formatted here and no re-parsing of text cells (keeps lr '3e-05')."""
    cells = df.copy()
    for col in cells.columns:
        if cells[col].dtype.kind == "f":
            cells[col] = [("--" if math.isnan(v) else floatfmt.format(v)) for v in cells[col]]
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"


def write_table(out: dict[str, str], stem: str, table: pd.DataFrame, text: pd.DataFrame | None = None) -> None:
    """Every declared format of table ``stem``: the csv holds ``table``; the .md and .tex hold ``text``
    (a reader's layout of it; ``table`` itself when None) with the catalog's caption and label."""
    item = catalog.get("table", stem)
    text = table if text is None else text
    render = {
        "csv": lambda: table.to_csv(index=False, float_format=item.csv_float),
        "md": lambda: to_markdown(text, item.text_float) if not text.empty else "(no rows)\n",
        "tex": lambda: (
            to_latex(text, item.caption, item.label, item.text_float)
            if not text.empty
            else f"% {stem}: no rows in this config\n"
        ),
    }
    for fmt in item.formats:
        runtime.write_text_atomic(out[item.key(fmt)], render[fmt]())


def save_figure(fig, out: dict[str, str], stem: str, dpi: int) -> None:
    """Every declared format of figure ``stem`` (``dpi`` for the raster ones), then close it."""
    import matplotlib.pyplot as plt

    item = catalog.get("figure", stem)
    for fmt in item.formats:
        with runtime.atomic_file(out[item.key(fmt)]) as tmp:
            fig.savefig(tmp, **({"dpi": dpi} if fmt == "png" else {}))
    plt.close(fig)
