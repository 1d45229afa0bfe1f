from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.selection import select_alpha_stage

with job_logging(snakemake.log[0]):
    grid = {a: snakemake.input[f"alpha_{i}"] for i, a in enumerate(snakemake.params.alphas_text)}
    select_alpha_stage(
        grid,
        snakemake.input.get("target"),
        param(snakemake, "alphas"),
        param(snakemake, "selection"),
        snakemake.output[0],
        method=snakemake.wildcards.method,
    )
