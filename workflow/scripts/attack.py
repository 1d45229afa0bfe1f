from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import attack_model

with job_logging(snakemake.log[0]):
    attack_model(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        param(snakemake, "attack"),
        max_length=snakemake.params.max_length,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        target_dir=snakemake.input.get("target"),
    )
