"""Import cost of an evaluation job, measured with ``python -X importtime`` in fresh subprocesses.

An evaluate job (workflow/scripts/evaluate.py -> qunlearn.stages.evaluate_model) spends most of its
start-up importing. This script runs, N times, a child that does what such a job imports: the job
script's modules, ``evaluate_model``'s lazy imports, every metric plugin's implementation, the
tokenizer and model classes ``from_pretrained`` resolves to (``LlamaForCausalLM``, the fast
tokenizer), the ROUGE scorer and ``tqdm.auto``; then it prints the median over the runs of

- the total import time (sum of the top-level cumulative times of ``-X importtime``), and
- the cumulative time of the heaviest modules (top 10 by median; any of ``--watch`` too).

With ``--job MODEL_DIR DATA_DIR`` the child instead runs a whole evaluation (``evaluate_model``, the
``fp32`` scheme unless ``--scheme``) on those inputs, so imports made lazily while loading and
generating count too; the timings are still import times only.

    python scripts/benchmark_imports.py -n 5
    python scripts/benchmark_imports.py -n 5 --job results/synth/models/retrain results/synth/data

Run it with the project's interpreter (PYTHONPATH=src for a worktree). On a loaded machine take the
median of several runs (the default) and compare before/after in the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WATCH = (
    "torch",
    "transformers",
    "transformers.models.auto.auto_factory",
    "transformers.generation.candidate_generator",
    "sklearn",
    "scipy",
    "pandas",
    "torch._dynamo",
    "torch.distributed.tensor",
    "nltk",
    "datasets",
    "bitsandbytes",
    "llmcompressor",
    "ipywidgets",
)

# What an evaluate job imports, in the order it imports it.
JOB_IMPORTS = """
import time
t0 = time.perf_counter()
from qunlearn.jobs import job_logging, param                      # workflow/scripts/evaluate.py
from qunlearn.stages import evaluate_model
from qunlearn.data.tokenizer import load_tokenizer                # evaluate_model's lazy imports
from qunlearn.evaluate.runner import evaluate_all
from qunlearn.models import load_model
from qunlearn.quantize import load_quantized, quantize_model
from qunlearn import registries
import numpy, torch                                               # runtime.seed_everything
for spec in registries.METRICS.specs():                           # evaluate_all: each metric's code
    spec.load()
from qunlearn.evaluate import generation, metrics
from transformers import AutoTokenizer, AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers import LlamaConfig, LlamaForCausalLM            # what from_pretrained resolves to
LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2))
from tqdm.auto import tqdm                                        # generation's progress bar
metrics.rouge_l_f1("a b", "a c")                                  # the ROUGE scorer
metrics.mia_auc([1.0, 2.0], [1.5, 0.5])
print("WALL", time.perf_counter() - t0)
"""

# A whole evaluate job; scheme and evaluate settings come as JSON, as the rule's params do.
JOB_RUN = """
import json, sys, time
t0 = time.perf_counter()
from qunlearn.jobs import job_logging, param
from qunlearn.stages import evaluate_model
model, data, out, name, scheme, evaluate = sys.argv[1:7]
evaluate_model(model, data, out, json.loads(scheme), json.loads(evaluate), seed=0, threads=1,
               scheme_name=name, progress=False)
print("WALL", time.perf_counter() - t0)
"""


def parse_importtime(stderr: str) -> tuple[int, dict[str, int], dict[str, set[str]]]:
    """(total us: sum of top-level cumulative times, {module: cumulative us}, {module: ancestors})."""
    rows = []  # (depth, module, cumulative us), children listed before their parent
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, c, name = line[len("import time:") :].split("|", 2)
        name = name.rstrip("\n")[1:]
        rows.append(((len(name) - len(name.lstrip(" "))) // 2, name.strip(), int(c)))
    total = sum(c for d, _, c in rows if d == 0)
    cum: dict[str, int] = {}
    ancestors: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []  # the chain of open parents, walking the rows backwards
    for depth, module, c in reversed(rows):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        cum[module] = max(cum.get(module, 0), c)
        ancestors.setdefault(module, set()).update(m for _, m in stack)
        stack.append((depth, module))
    return total, cum, ancestors


def top_modules(med: dict[str, float], ancestors: dict[str, set[str]], n: int) -> list[str]:
    """The n costliest modules, leaving out one that is nearly all (>= 90%) of a listed ancestor's
    cost (sklearn.utils under sklearn): a chain of single imports counts once, at its top."""
    out: list[str] = []
    for m in sorted(med, key=med.get, reverse=True):
        if any(a in out and med[m] >= 0.9 * med[a] for a in ancestors.get(m, ())):
            continue
        out.append(m)
        if len(out) == n:
            break
    return out


def run_once(code: str, args: list[str], env: dict):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    wall = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("WALL")))
    total, cum, ancestors = parse_importtime(proc.stderr)
    return total, cum, wall, ancestors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument(
        "--job",
        nargs=2,
        metavar=("MODEL_DIR", "DATA_DIR"),
        help="run a whole evaluate_model on these inputs instead of the import list",
    )
    ap.add_argument("--scheme", default="fp32", help="with --job: a scheme of config.yaml")
    ap.add_argument(
        "--config",
        default=str(Path(__file__).resolve().parents[1] / "config.yaml"),
        help="with --job: the config whose quantize.schemes and evaluate are used",
    )
    ap.add_argument("--watch", nargs="*", default=list(WATCH), help="modules always reported")
    ap.add_argument("--json", help="also write the medians here")
    a = ap.parse_args()

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.job:
            import yaml

            cfg = yaml.safe_load(Path(a.config).read_text())
            code, args = (
                JOB_RUN,
                [
                    *a.job,
                    str(Path(tmp) / "eval.json"),
                    a.scheme,
                    json.dumps(cfg["quantize"]["schemes"][a.scheme]),
                    json.dumps(cfg.get("evaluate", {})),
                ],
            )
        else:
            code, args = JOB_IMPORTS, []
        for i in range(a.runs):
            runs.append(run_once(code, args, env))
            print(
                f"run {i + 1}/{a.runs}: imports {runs[-1][0] / 1e6:.3f} s (-X importtime), "
                f"child wall {runs[-1][2]:.3f} s",
                file=sys.stderr,
            )

    med_total = statistics.median(r[0] for r in runs)
    med_wall = statistics.median(r[2] for r in runs)
    modules = set().union(*(r[1] for r in runs))
    med = {m: statistics.median(r[1].get(m, 0) for r in runs) for m in modules}
    ancestors: dict[str, set[str]] = {}
    for r in runs:
        for m, anc in r[3].items():
            ancestors.setdefault(m, set()).update(anc)
    top = top_modules(med, ancestors, a.top)
    print(
        f"python {sys.version.split()[0]}, {a.runs} runs, {'evaluate_model' if a.job else 'job imports'}; "
        f"loadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"median import time (-X importtime, sum of top-level cumulative): {med_total / 1e6:.3f} s")
    print(
        f"median child wall time (includes -X importtime overhead{', evaluation' if a.job else ''}): {med_wall:.3f} s"
    )
    print(f"top {a.top} cumulative (median, s; a module that is >= 90% of a listed importer's cost is left out):")
    for m in top:
        print(f"  {med[m] / 1e6:8.3f}  {m}")
    print("watched (median cumulative, s; '-' = not imported):")
    for m in a.watch:
        print(f"  {med[m] / 1e6:8.3f}  {m}" if med.get(m) else f"  {'-':>8}  {m}")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "runs": a.runs,
                    "median_import_s": med_total / 1e6,
                    "median_wall_s": med_wall,
                    "median_cumulative_s": {m: med[m] / 1e6 for m in top + [w for w in a.watch if w in med]},
                    "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
