from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import evaluate_model

with job_logging(snakemake.log[0]):
    evaluate_model(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        param(snakemake, "scheme"),
        param(snakemake, "evaluate"),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        scheme_name=snakemake.wildcards.scheme,
    )
