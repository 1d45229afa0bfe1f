"""paper/: the LaTeX sources generated from the results, and the PDF build.

- ``macros.tex``: every number that paper/main.tex quotes, as ``\\qn{key}`` (no number is typed by
  hand in the .tex). Keys (``<ds>`` a dataset, ``<s>`` a scheme, ``<m>`` a method):
  ``ret/<ds>/<s>`` mean retention of the utility-constrained methods (summary.json),
  ``m2kept/<ds>/<s>`` the target's M2 at ``<s>`` relative to full precision,
  ``ret/<ds>/<m>/alpha=<a>/lr=<lr>/<s>`` one unlearned model's retention (retention.csv), and
  ``ret/<ds>/<m>/<s>`` the same when the method has a single (alpha, lr) (an external model's:
  ``<m>`` its name),
  ``n/<ds>/methods`` the number of utility-constrained methods,
  ``summary/<ds>/<path>`` every other number of summary.json (keys added by later issues flow in).
  With two or more datasets ``<ds>`` also takes the value ``mean_over_datasets`` (the unweighted
  mean over datasets, ``report.tables.mean_over_datasets``): ``ret/mean_over_datasets/<s>`` etc.
  An undefined key prints a bold ?? and a LaTeX warning, like an undefined \\ref.
- ``tables.tex`` / ``figures.tex``: one ``\\input`` per LaTeX table and one figure environment per
  PDF figure of the report catalog (``report.catalog``), so a table or figure declared there flows
  into main.tex without editing it.
- ``metrics.json`` (DVC metrics: the headline numbers) and ``retention_by_scheme.csv`` (DVC plot).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import paths, runtime
from .render import latex_escape

log = logging.getLogger(__name__)


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _flatten(obj, prefix: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}/{k}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, obj


def read_retention(path: str | Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["retention"] = float(r["retention"]) if r["retention"] not in ("", "nan") else math.nan
    return rows


def fold_seeds(rows: list[dict]) -> list[dict]:
    """retention.csv rows with each arm's replicates (``seed~<n>`` ids) folded into its base-seed row,
    whose retention becomes the mean over the seeds (the rows unchanged when there is no replicate)."""
    if not any(paths.seed_of(r.get("model_id", "")) for r in rows):
        return rows
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], paths.seedless_id(r["model_id"]), r["scheme"]), []).append(r)
    out = []
    for (_, model_id, _), group in groups.items():
        base = next((r for r in group if r["model_id"] == model_id), group[0])
        out.append({**base, "model_id": model_id, "retention": sum(r["retention"] for r in group) / len(group)})
    return out


def numbers(summary: dict, retention_rows: list[dict]) -> dict[str, str]:
    """Macro key -> formatted number (see the module docstring for the keys)."""
    out: dict[str, str] = {}
    for ds, s in summary.items():
        for key, value in _flatten(s, f"summary/{ds}"):
            out[key] = fmt(value)
        for scheme, v in (s.get("mean_retention_utility_constrained") or {}).items():
            out[f"ret/{ds}/{scheme}"] = fmt(v)
        for scheme, v in (s.get("target_m2_relative_to_full_precision") or {}).items():
            out[f"m2kept/{ds}/{scheme}"] = fmt(v)
        if isinstance(s.get("methods"), list):
            out[f"n/{ds}/methods"] = str(len(s["methods"]))
    retention_rows = fold_seeds(retention_rows)
    # retention.csv marks the headline arms (one per dataset and method): they get the short keys
    # and win the long key over a grid arm of the same alpha and lr
    if any("headline" in r for r in retention_rows):
        retention_rows = sorted(retention_rows, key=lambda r: str(r.get("headline")) == "True")
    models: dict[tuple, set] = {}
    for r in retention_rows:
        if r.get("model") != "external":  # an external model has no alpha or lr: the short key only
            out[f"ret/{r['dataset']}/{r['method']}/alpha={r['alpha']}/lr={r['lr']}/{r['scheme']}"] = fmt(r["retention"])
        models.setdefault((r["dataset"], r["method"]), set()).add((r["alpha"], r["lr"]))
    for r in retention_rows:
        if str(r.get("headline")) == "True" or ("headline" not in r and len(models[(r["dataset"], r["method"])]) == 1):
            out[f"ret/{r['dataset']}/{r['method']}/{r['scheme']}"] = fmt(r["retention"])
    return dict(sorted(out.items()))


def robust_numbers(rows: list[dict]) -> dict[str, str]:
    """``robust/<dataset>/<method>/<column>``: every number of robust_retention.csv (retention at
    full precision, at each 4-bit scheme, after each attack, and the worst case)."""
    out = {}
    for r in rows:
        for col, value in r.items():
            if col in ("dataset", "method", "worst_at") or value in ("", "nan", None):
                continue
            out[f"robust/{r['dataset']}/{r['method']}/{col}"] = fmt(float(value))
    return out


def macros_tex(values: dict[str, str]) -> str:
    for key in values:
        if any(c in key for c in "{}\\%#~"):
            raise ValueError(f"macro key {key!r}: braces, backslashes, %, # and ~ are not allowed")
    lines = [
        "% Generated by qunlearn.report.paper (rule paper_numbers) from results/tables/; do not edit.",
        r"\makeatletter",
        r"\providecommand{\qn}[1]{\@ifundefined{qn@#1}"
        r"{\textbf{??}\PackageWarning{qunlearn}{number `#1' is not defined in macros.tex}}"
        r"{\@nameuse{qn@#1}}}",
    ]
    lines += [rf"\@namedef{{qn@{k}}}{{{v}}}" for k, v in values.items()]
    lines += [r"\makeatother", ""]
    return "\n".join(lines)


def headline_metrics(summary: dict) -> dict:
    """metrics.json for DVC: per dataset, retention and the target's M2 kept, per scheme."""
    out = {}
    for ds, s in summary.items():
        out[ds] = {
            "retention": dict(s.get("mean_retention_utility_constrained") or {}),
            "target_m2_kept": dict(s.get("target_m2_relative_to_full_precision") or {}),
        }
    return out


def retention_plot_csv(summary: dict, scheme_bits: dict[str, int | None]) -> str:
    """One row per dataset and scheme: the mean retention with the scheme's bits (DVC plot)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset_scheme", "dataset", "scheme", "bits", "retention"])
    for ds, s in summary.items():
        ret = s.get("mean_retention_utility_constrained") or {}
        order = [k for k in scheme_bits if k in ret] + sorted(k for k in ret if k not in scheme_bits)
        for scheme in order:
            bits = scheme_bits.get(scheme)
            w.writerow([f"{ds} {scheme}", ds, scheme, "" if bits is None else bits, f"{ret[scheme]:.6g}"])
    return buf.getvalue()


def write_numbers(
    summary_json: str,
    retention_csv: str,
    scheme_bits: dict,
    macros: str,
    metrics: str,
    plot: str,
    robust_csv: str | None = None,
) -> None:
    summary = runtime.read_json(summary_json, "the report's summary JSON")
    values = numbers(summary, read_retention(retention_csv))
    if robust_csv is not None:
        with open(robust_csv, newline="", encoding="utf-8") as fh:
            robust = list(csv.DictReader(fh))
        values = dict(sorted({**values, **robust_numbers(robust)}.items()))
    runtime.write_text_atomic(macros, macros_tex(values))
    runtime.write_json_atomic(metrics, headline_metrics(summary))
    runtime.write_text_atomic(plot, retention_plot_csv(summary, scheme_bits))
    log.info("%d numbers -> %s", len(values), macros)


def includes(tables: list[str], figures: dict[str, str]) -> tuple[str, str]:
    """tables.tex and figures.tex: the LaTeX tables and PDF figures among ``tables`` (file names) and
    ``figures`` (file name -> caption, plain text), in order."""
    head = "% Generated by qunlearn.report.paper (rule paper_includes) from the report catalog; do not edit.\n"
    tex_tables = [t for t in tables if t.endswith(".tex")]
    t = head + "".join(rf"\input{{tables/{Path(name).stem}}}" + "\n" for name in tex_tables)
    f = head
    for name, caption in figures.items():
        if not name.endswith(".pdf"):
            continue
        stem = Path(name).stem
        f += "\n".join(
            [
                r"\begin{figure}[t]",
                r"\centering",
                rf"\includegraphics[width=\linewidth]{{figures/{name}}}",
                rf"\caption{{{latex_escape(caption)}}}",
                rf"\label{{fig:{stem}}}",
                r"\end{figure}",
                "",
            ]
        )
    return t, f


def write_includes(tables: list[str], figures: dict[str, str], tables_tex: str, figures_tex: str) -> None:
    t, f = includes(tables, figures)
    runtime.write_text_atomic(tables_tex, t)
    runtime.write_text_atomic(figures_tex, f)


LATEX_HINT = (
    "the PDF needs LaTeX (latexmk, pdflatex and the LaTeX recommended packages): "
    "run `bash scripts/install_latex.sh` (Debian/Ubuntu, uses apt) or install TeX Live; "
    "tables, figures and macros.tex are generated without it (`snakemake --cores 2`)"
)


def build_pdf(main_tex: str | Path, pdf: str | Path) -> None:
    """Compile ``main_tex`` with latexmk in the directory of ``pdf`` (where macros.tex, tables.tex,
    figures.tex, tables/ and figures/ are), into a temporary build directory; the PDF is moved into
    place only when LaTeX succeeds, and the build directory is removed."""
    exe = shutil.which("latexmk")
    if exe is None or shutil.which("pdflatex") is None:
        raise RuntimeError(f"latexmk/pdflatex not found on PATH: {LATEX_HINT}")
    paper_dir = Path(pdf).resolve().parent
    build = Path(tempfile.mkdtemp(prefix=".latex-build-", dir=paper_dir))
    try:
        cmd = [
            exe,
            "-pdf",
            "-interaction=nonstopmode",
            "-halt-on-error",
            "-file-line-error",
            f"-outdir={build}",
            str(Path(main_tex).resolve()),
        ]
        log.info("%s (in %s)", " ".join(cmd), paper_dir)
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
        proc = subprocess.run(cmd, cwd=paper_dir, capture_output=True, text=True, env=env)
        log.info("latexmk output:\n%s", proc.stdout[-20000:])
        built = build / (Path(main_tex).stem + ".pdf")
        if proc.returncode != 0 or not built.is_file():
            tex_log = build / (Path(main_tex).stem + ".log")
            tail = tex_log.read_text(errors="replace")[-4000:] if tex_log.is_file() else proc.stderr[-4000:]
            raise RuntimeError(f"latexmk failed (exit {proc.returncode}) on {main_tex}:\n{tail}")
        os.replace(built, pdf)
    finally:
        shutil.rmtree(build, ignore_errors=True)
