from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import unlearn_model

with job_logging(snakemake.log[0]):
    unlearn_model(
        snakemake.input.base,
        snakemake.input.data,
        snakemake.output[0],
        param(snakemake, "unlearn"),
        max_length=snakemake.params.max_length,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        selection_json=snakemake.input.get("selection"),
        prepared_dir=snakemake.input.get("prepared"),
        grid_twins={k[len("twin_") :]: v for k, v in snakemake.input.items() if k.startswith("twin_")},
    )
