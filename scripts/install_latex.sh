#!/usr/bin/env bash
# LaTeX for paper/main.pdf (rule `paper`: `snakemake paper`), from Debian's packages only, and
# poppler-utils (pdftotext) for the test that reads the PDF back. Only needed for the PDF: tables,
# figures and macros are generated without it. Needs root (or sudo) and apt.
# Measured on Debian 12 (2026-11-24): 38 packages, ~150 MiB installed, ~30 s with apt-get update.
set -euo pipefail
PACKAGES=(texlive-latex-base texlive-latex-recommended latexmk poppler-utils)
if command -v latexmk >/dev/null && command -v pdflatex >/dev/null && command -v pdftotext >/dev/null \
   && kpsewhich booktabs.sty >/dev/null; then
  echo "LaTeX already installed: $(pdflatex --version | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
echo "installed: $(pdflatex --version | head -1); $(latexmk --version | tail -1)"
