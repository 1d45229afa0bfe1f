# Cluster resources of the GPU rules (train_base, unlearn, quantize, evaluate), computed from the
# config's model size and each method's traits by qunlearn.resources.rule_resources (docs "Real
# scale": memory plan, runtimes). The partition is a cluster fact: profiles/slurm sends jobs that
# ask for a `gpu` to the GPU partition. Local runs ignore `gpu` and `runtime`.

from qunlearn import resources as qresources


def job_resources(rule_name):
    """gpu, nodes (1: a sharded job's GPUs on one node), mem_mb, runtime (minutes) of one job of
    `rule_name`, from its wildcards."""

    def get(key):
        return lambda w: qresources.rule_resources(
            EXP, rule_name, w.dataset, getattr(w, "method", None), getattr(w, "epochs", None)
        )[key]

    return {key: get(key) for key in ("gpu", "nodes", "mem_mb", "runtime")}


def fetch_mem_mb(wildcards):
    n, b = qresources.model_size(EXP, wildcards.dataset)
    return int(max(2000, 2 * n * b / 1e6 + 2000))


def external_mem_mb(wildcards):
    """A checkpoint is held once in its dtype (and once while saving); an adapter is merged into a
    float32 copy of the target."""
    n, b = qresources.model_size(EXP, wildcards.dataset)
    adapter = EXP.datasets[wildcards.dataset].external[wildcards.external].adapter is not None
    return int(max(2000, (n * (4 + b) if adapter else 2 * n * b) / 1e6 + 2000))
