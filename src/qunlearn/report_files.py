"""Names of the study tables and figures (imported by the workflow at parse time: no pandas here)."""

STUDY_TABLE_STEMS = ("table4_alpha_grid", "table3_sure", "lr_sweep", "epochs_ablation", "loss_variants")
STUDY_TABLE_FILES = [f"{stem}.{ext}" for stem in STUDY_TABLE_STEMS for ext in ("csv", "md", "tex")]
STUDY_FIGURE_FILES = ["lr_sweep.png", "lr_sweep.pdf"]
