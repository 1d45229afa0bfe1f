from qunlearn.jobs import job_logging, param
from qunlearn.stages import analyse_weights

with job_logging(snakemake.log[0]):
    analyse_weights(
        snakemake.input.target, snakemake.input.unlearned, snakemake.output[0], param(snakemake, "scheme"),
        scheme_name=snakemake.wildcards.scheme,
        target_quant=snakemake.input.get("target_quant"), unlearned_quant=snakemake.input.get("unlearned_quant"),
    )
