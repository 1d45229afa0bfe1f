from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import train_base

with job_logging(snakemake.log[0]):
    train_base(
        snakemake.wildcards.base,
        snakemake.input.data,
        snakemake.output[0],
        model_cfg=param(snakemake, "model"),
        train_cfg=param(snakemake, "train"),
        eval_cfg=param(snakemake, "evaluate"),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
