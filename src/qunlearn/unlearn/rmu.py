"""RMU, Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP benchmark"; reference
implementation centerforaisafety/wmdp, ``rmu/unlearn.py``), and the variant the quantization paper's
release ran (``rmu_release``).

``rmu`` (the WMDP method). A fixed control vector u (uniform [0, 1)^d, normalised, times the
steering coefficient c; drawn once from a generator seeded with the job's seed). With h_l(x) the
output of decoder layer l (``hidden_states[l + 1]`` of transformers):

    forget = MSE(h_l(x_f), c u)                        (mean over positions and the d dimensions)
    retain = MSE(h_l(x_r), h_l^frozen(x_r))
    loss   = forget + alpha * retain

and only the MLP down-projections of layers l-2..l train. The source's defaults (argparse of
``rmu/unlearn.py``, for 32-layer 7B models): alpha 100, c 20, lr 5e-5, l = 7, layers 5, 6, 7
(``param_ids 6``: the down-projection). Its README's Zephyr-7B run uses c 6.5, alpha 1200.

Scaled to the tiny model (4 layers, hidden 128). **Layer**: the same relative depth,
l = round(7/32 * num_layers): 7 on 32 layers, 1 on the default 4 (0 on a 1-layer test model); the
updated layers are l-2..l clipped at 0 (0 and 1 on the default). **Coefficient**: RMU works when
||c u|| = c is large against the norm of the layer's hidden states (the forget states are driven
far outside their usual range; Adaptive RMU, Dang et al. 2025, sets c proportional to that norm).
Measured on the default target (tiny Llama of config.yaml, ``hidden_states[2]`` = layer 1's output,
32 forget documents): token norms median 15.3, 90th percentile 20.0, max 27.1 (retain: 14.4, 18.5).
Zephyr-7B's layer-7 norms could not be measured here, so the source's ratio c / norm is unknown; the
default c = 60 is about 4x the median (3x the 90th percentile): far outside the cloud, as c 20 is
meant to be for the source. A setting; sweep it when it matters.

``rmu_release`` (the quantization paper's release, ``baselines/baselines/iterative.py``, loss type
``rmu``): on the *last* hidden layer (``hidden_states[-1]``, after the final norm), with u drawn
afresh every step (uniform [-1, 1)^d, normalised), every parameter trainable, and **alpha both the
steering coefficient and the retain weight**:

    forget = mean over positions of ||h(x_f) - alpha u||^2      (squared norm: a sum over d)
    retain = mean over positions of ||h(x_r) - h^frozen(x_r)||^2
    loss   = forget + alpha * retain

Positions: ``faithful`` averages over real tokens (attention mask); ``paper_code`` over every padded
position, as both sources do (the release also runs these forwards without an attention mask). The
terms are means over positions, so ``term_sizes`` counts positions and micro-batches accumulate
exactly (``faithful``; under ``paper_code`` the padded length changes with the split, as for KLR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod

if TYPE_CHECKING:
    import torch

SOURCE_LAYER, SOURCE_DEPTH = 7, 32  # the source's l on its 32-layer models


@dataclass
class RMUSettings(MethodSettings):
    """RMU's layer, updated layers and steering coefficient c (the retain weight is the arm's alpha,
    source 100)."""

    # null: the source's relative depth, round(7/32 * num_layers): 7 on 32 layers, 1 on the default 4
    layer: int | None = None
    # null: layers layer-2..layer (clipped at 0), the source's 5, 6, 7; their MLP down-projections train
    update_layers: list[int] | None = None
    # c: source 20 (7B, layer 7); 60 = ~4x the median layer-1 token norm of the tiny target (15.3)
    steering_coeff: float = 60.0

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.layer is not None and self.layer < 0:
            raise ConfigError(f"{where}.layer: must be >= 0 or null, got {self.layer}")
        if self.update_layers is not None and (not self.update_layers or any(i < 0 for i in self.update_layers)):
            raise ConfigError(
                f"{where}.update_layers: a non-empty list of layer indices >= 0, got {self.update_layers}"
            )
        if not self.steering_coeff > 0:
            raise ConfigError(f"{where}.steering_coeff: must be > 0, got {self.steering_coeff}")


SPEC = METHODS.register(
    MethodSpec(
        name="rmu",
        settings=RMUSettings,
        impl="qunlearn.unlearn.rmu:RMU",
        summary="RMU: layer-l states of D_f to a fixed random vector c*u, + alpha MSE to the frozen states on D_r",
        source='Li et al. 2024, "The WMDP benchmark" (arXiv 2403.03218), centerforaisafety/wmdp rmu/unlearn.py',
        reference_outputs=("hidden_states",),
        needs_retain=True,
        trains="the MLP down-projections of layers l-2..l",
        family="rmu",
    )
)
RELEASE_SPEC = METHODS.register(
    MethodSpec(
        name="rmu_release",
        settings=MethodSettings,
        impl="qunlearn.unlearn.rmu:RMURelease",
        summary="RMU as the paper's release ran it: last layer, u redrawn each step, alpha steers and weighs retain",
        source="Zhang et al. ICLR 2025 release, baselines/baselines/iterative.py (loss type rmu)",
        reference_outputs=("hidden_states",),
        needs_retain=True,
        family="rmu",
    )
)


def resolve_layer(layer: int | None, num_layers: int) -> int:
    """The layer whose output RMU steers: ``layer`` or the source's relative depth."""
    out = round(SOURCE_LAYER / SOURCE_DEPTH * num_layers) if layer is None else layer
    if not 0 <= out < num_layers:
        raise ConfigError(f"unlearn.methods.rmu.layer: {out} is not a layer of this {num_layers}-layer model")
    return out


def default_update_layers(layer: int) -> list[int]:
    return list(range(max(0, layer - 2), layer + 1))


def position_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, over_d: str = "mean"):
    """Mean over positions (those of ``mask``, or all when None) of the squared distance of each
    position's state to ``target`` (broadcast), averaged (``mean``: MSE) or summed (``sum``:
    squared L2 norm) over the hidden dimensions."""
    sq = (h.float() - target.float()).pow(2)
    per_position = sq.mean(-1) if over_d == "mean" else sq.sum(-1)
    if mask is None:
        return per_position.mean()
    m = mask.to(per_position.dtype)
    return (per_position * m).sum() / m.sum().clamp_min(1.0)


class _RMUBase(UnlearningMethod):
    over_d = "mean"

    def _index(self) -> int:  # hidden_states index
        raise NotImplementedError

    def _mask(self, batch):
        return batch["attention_mask"] if self.variant == "faithful" else None

    def _hidden(self, model, batch, index: int):
        mask = batch["attention_mask"] if self.forward_mask else None
        return model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True).hidden_states[index]

    forward_mask = True

    def term_sizes(self, forget_batch, retain_batch):
        def positions(batch):
            m = batch["attention_mask"]
            return int(m.sum()) if self.variant == "faithful" else int(m.numel())

        return {"forget": positions(forget_batch), "retain": positions(retain_batch)}

    def losses(self, model, reference, forget_batch, retain_batch):
        import torch

        i = self._index()
        out = {
            "forget": position_mse(
                self._hidden(model, forget_batch, i), self.control, self._mask(forget_batch), self.over_d
            )
        }
        with torch.no_grad():
            frozen = self._hidden(reference, retain_batch, i).detach()
        h = self._hidden(model, retain_batch, i)
        out["retain"] = position_mse(h, frozen, self._mask(retain_batch), self.over_d)
        out["loss"] = self.combine(out)
        return out


class RMU(_RMUBase):
    def setup(self, model, reference, tokenizer):
        import torch

        n = model.config.num_hidden_layers
        self.layer = resolve_layer(self.settings.layer, n)
        self.update_layers = self.settings.update_layers or default_update_layers(self.layer)
        bad = [i for i in self.update_layers if i >= n]
        if bad:
            raise ConfigError(f"unlearn.methods.rmu.update_layers: {bad} not layers of this {n}-layer model")
        # seeded with the job's seed (runtime.seed_everything set it): the same u on every rerun
        gen = torch.Generator().manual_seed(torch.initial_seed())
        u = torch.rand(model.config.hidden_size, generator=gen)
        device = next(model.parameters()).device
        self.control = (u / u.norm() * self.settings.steering_coeff).to(device)

    def _index(self) -> int:
        return self.layer + 1  # hidden_states[0] is the embeddings

    def trainable_parameters(self, model):
        wanted = {int(i) for i in self.update_layers}
        pattern = re.compile(r"(?:^|\.)layers\.(\d+)\.mlp\.down_proj\.weight$")
        out = {}
        for name, p in model.named_parameters():
            m = pattern.search(name)
            keep = m is not None and int(m.group(1)) in wanted
            p.requires_grad_(keep)
            if keep:
                out[name] = p
        if not out:
            raise ValueError(f"rmu: no parameter named layers.<i>.mlp.down_proj.weight for layers {sorted(wanted)}")
        return out


class RMURelease(_RMUBase):
    """The release's RMU: alpha steers and weighs; u redrawn once per optimizer step (after each
    step, in ``transform_gradients``), so the micro-batches of a step share it."""

    over_d = "sum"

    @property
    def forward_mask(self) -> bool:  # the release's hidden-state forwards pass no attention mask
        return self.variant == "faithful"

    def setup(self, model, reference, tokenizer):
        import torch

        self._gen = torch.Generator().manual_seed(torch.initial_seed())
        self._d, self._device = model.config.hidden_size, next(model.parameters()).device
        self._draw()

    def _draw(self) -> None:
        import torch

        u = torch.rand(self._d, generator=self._gen) * 2 - 1  # uniform [-1, 1)
        self.control = (u / u.norm() * self.alpha).to(self._device)

    def _index(self) -> int:
        return -1

    def transform_gradients(self, params):
        self._draw()  # the next step's u
        return {}
