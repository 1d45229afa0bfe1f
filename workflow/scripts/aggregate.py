from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.stages import aggregate

with job_logging(snakemake.log[0]):
    aggregate(
        snakemake.input.evals,
        param(snakemake, "report"),
        dict(snakemake.output.items()),
        selections=param(snakemake, "selections"),
        headline_ids=param(snakemake, "headline"),
        studies=param(snakemake, "studies"),
    )
