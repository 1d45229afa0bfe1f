from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.hub import fetch_model
from qunlearn.jobs import job_logging, param

with job_logging(snakemake.log[0]):
    fetch_model(
        param(snakemake, "model"),
        snakemake.input.data,
        snakemake.output[0],
        where=f"datasets.{snakemake.wildcards.dataset}.pretrained.{snakemake.wildcards.base}",
    )
