"""The plugin registries are torch-free: a dry run (planner, checks, reports' names) imports them
without torch, transformers, pandas or sklearn."""

import os
import subprocess
import sys

from conftest import ROOT


def test_registries_import_no_heavy_library():
    code = (
        "import sys, qunlearn.registries; bad = {'torch', 'transformers', 'pandas', 'sklearn'} & set(sys.modules);"
        " assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
