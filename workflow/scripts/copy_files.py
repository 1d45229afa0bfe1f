from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

import logging
import shutil

from qunlearn.jobs import job_logging
from qunlearn.runtime import atomic_file

with job_logging(snakemake.log[0]):
    for src, dst in zip(snakemake.input, snakemake.output):
        with atomic_file(dst) as tmp:
            shutil.copyfile(src, tmp)
        logging.info("%s -> %s", src, dst)
