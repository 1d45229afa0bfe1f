from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import analyse_weights

inp = snakemake.input
with job_logging(snakemake.log[0]):
    analyse_weights(
        inp.target,
        inp.unlearned,
        snakemake.output[0],
        param(snakemake, "schemes"),
        quant_dirs={s: (inp[f"target_{s}"], inp[f"unlearned_{s}"]) for s in param(snakemake, "calibrated")},
    )
