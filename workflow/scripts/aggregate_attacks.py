from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.attacks import aggregate_attacks

with job_logging(snakemake.log[0]):
    aggregate_attacks(
        list(snakemake.input.evals),
        param(snakemake, "data_dirs"),
        param(snakemake, "attacks"),
        param(snakemake, "headline"),
        param(snakemake, "report"),
        param(snakemake, "schemes"),
        dict(snakemake.output.items()),
    )
