"""Reports: the eval and analysis JSONs -> tables, figures and the paper's generated sources.

Layered bottom-up; a module imports only the ones above it in this list, so there are no cycles:

- ``retention``: the one definition of forget-knowledge retention (pure; also used by the alpha selection)
- ``catalog``: every table and figure declared once (stem, caption, formats, rule, inputs); no pandas
  or torch, the workflow imports it at parse time
- ``frame``: eval JSONs -> the long metrics frame (metrics.csv) and back
- ``render``: markdown/LaTeX rendering and the atomic writers of a declared table or figure
- ``tables``: retention per model, Table 1, the summary
- ``studies``, ``quant``: the study tables and the quantizer tables
- ``scale``: the model-size study's tables (retention and changed codes per size; the onset)
- ``figures``: the matplotlib figures
- ``paper``: paper/'s generated LaTeX sources (macros, includes) and the PDF build
- ``stages``: one entry point per rule (aggregate, figures, aggregate_quant)

This file imports nothing, so importing ``qunlearn.report.catalog`` stays pandas-free.
"""
