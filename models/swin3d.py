"""Video Swin Transformer (Liu et al., 2021, arXiv 2106.13230) with an I3D-style classification head.

Numerically the authors' network (SwinTransformer/Video-Swin-Transformer @ db018fb,
`mmaction/models/backbones/swin_transformer.py`, Apache-2.0), quirks included; see
`../shared/spec/model.md`. Module names follow the official checkpoint keys without the `backbone.`
prefix (and `cls_head.fc_cls` -> `head`), so converting a released file is a short key map.

Read top to bottom: `Block` (norm, shifted-window attention, MLP), `Stage` (blocks sharing one
`WindowPlan` per input size, then patch merging), `VideoSwin` (patch embedding, stages, norm, head).
The attention lives in `models/attention.py`, the other layers in `models/layers.py` and the compute
kernels (CPU bf16 paths, the CUDA fast-path hook) in `models/kernels.py`.

Tokens are channels-last `(N, D, H, W, C)` inside the network. The eval forward is capturable whole
by `torch.compile(fullgraph=True)` and `torch.export` (caches are skipped while tracing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.attention import (
    MAX_CACHED_SIZES,
    Size3,
    WindowAttention3D,
    WindowPlan,
    make_window_plan,
    tracing,
    window_partition,
    window_reverse,
)
from models.config import Swin3DConfig, config_from_dict
from models.layers import Mlp, PatchEmbed3D, PatchMerging, drop_path


class Block(nn.Module):
    """Swin block: x + DropPath(W-MSA(norm1(x))), then x + DropPath(MLP(norm2(x)))."""

    def __init__(self, dim, num_heads, window: Size3, shifted: bool, cfg: Swin3DConfig, drop_path_p: float):
        super().__init__()
        self.shifted = shifted  # odd blocks; the plan may still clip the shift to zero
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(
            dim, window, num_heads, cfg.qkv_bias, cfg.qk_scale, cfg.attn_drop_rate, cfg.drop_rate
        )
        self.drop_path_p = drop_path_p
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)

    def forward(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        """(N, D, H, W, C) -> same."""
        x = x + drop_path(self._attention_part(x, plan), self.drop_path_p, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_p, self.training)

    def _attention_part(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        n, d, h, w, c = x.shape
        x = self.norm1(x)
        # Pad after the norm, at the end: padded tokens stay zeros and act as keys (not masked).
        pad_d, pad_h, pad_w = (p - s for p, s in zip(plan.padded, (d, h, w)))
        if pad_d or pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h, 0, pad_d))
        if self.shifted and plan.shifted_order is not None:
            # roll(-shift) + partition as one gather: (N, L, C) -> (N*nW, tokens, C)
            tokens = x.reshape(n, -1, c).index_select(1, plan.shifted_order)
            windows = self.attn(tokens.view(-1, math.prod(plan.window), c), plan.shift_mask, plan.padded)
            # merge + roll(+shift) as one gather back to map order
            x = windows.view(n, -1, c).index_select(1, plan.shifted_inverse).view(n, *plan.padded, c)
        else:
            windows = self.attn(window_partition(x, plan.window), None)  # (N*nW, tokens, C)
            x = window_reverse(windows, plan.window, n, plan.padded)  # (N, D', H', W', C)
        if pad_d or pad_h or pad_w:
            x = x[:, :d, :h, :w]
        return x


class Stage(nn.Module):
    """`depth` blocks alternating unshifted/shifted windows, then optional patch merging."""

    def __init__(self, dim, depth, num_heads, cfg: Swin3DConfig, drop_path_ps, downsample: bool):
        super().__init__()
        self.window = cfg.window_size
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, cfg.window_size, j % 2 == 1, cfg, drop_path_ps[j]) for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.grad_checkpointing = False
        self._plans: dict[tuple, WindowPlan] = {}

    def window_plan(self, size: Size3, dtype, device) -> WindowPlan:
        """The stage's `WindowPlan` for a map size, built once per (size, dtype, device); built in the
        graph (not cached) under `torch.compile` / `torch.export`."""
        if tracing():
            return make_window_plan(size, self.window, dtype, device)
        key = (size, dtype, device)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_CACHED_SIZES:
                self._plans.clear()
            # Normal tensors even under inference_mode, so a later training pass can use the plan.
            with torch.inference_mode(False):
                plan = self._plans[key] = make_window_plan(size, self.window, dtype, device)
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, H, W, C) -> (N, D, H', W', C') (halved H, W and doubled C after merging)."""
        plan = self.window_plan(tuple(x.shape[1:4]), x.dtype, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, plan, use_reentrant=False)
            else:
                x = block(x, plan)
        return self.downsample(x) if self.downsample is not None else x


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class VideoSwin(nn.Module):
    """Video Swin Transformer backbone plus I3D head (average pool, dropout, linear).

    Build with `VideoSwin(**config_dict)` (keys of `config.json`; `format`, `pretrained2d`,
    `imagenet2d` ignored) or `VideoSwin.from_config(cfg)`. Maps float (N, 3, T, H, W) to logits
    (N, num_classes); any T, H, W (end-padded to the patch size; windows clip to small maps).
    """

    def __init__(self, **config):
        super().__init__()
        cfg = config_from_dict(config)
        self.config = cfg
        self.patch_embed = PatchEmbed3D(cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.patch_norm)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        total = sum(cfg.depths)
        # linspace(0, drop_path_rate, total blocks), in plain Python so the model builds on `meta` too
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            first = sum(cfg.depths[:i])
            stage = Stage(
                cfg.embed_dim * 2**i, depth, heads, cfg, rates[first : first + depth], i < len(cfg.depths) - 1
            )
            self.layers.append(stage)
        self.norm = nn.LayerNorm(cfg.num_features)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        self.apply(_init_weights)
        for module in self.modules():
            if isinstance(module, WindowAttention3D):
                nn.init.normal_(module.relative_position_bias_table, std=0.02)
        nn.init.normal_(self.head.weight, std=0.01)  # I3DHead's init

    @classmethod
    def from_config(cls, cfg: Swin3DConfig) -> VideoSwin:
        """Build from a `Swin3DConfig`."""
        return cls(**cfg.to_dict())

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output after the final norm.

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, C, D, H', W') with C = config.num_features, D = ceil(T / patch_t).
        """
        if x.ndim != 5 or x.shape[1] != self.config.in_chans or not x.is_floating_point():
            raise ValueError(
                f"expected a float tensor (N, {self.config.in_chans}, T, H, W), got {x.dtype} of shape "
                f"{tuple(x.shape)} (channels come before time; normalise uint8 frames to float first)"
            )
        x = self.pos_drop(self.patch_embed(x))  # (N, D, H, W, C)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).permute(0, 4, 1, 2, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding: final-norm output averaged over D, H, W.

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, C) with C = config.num_features (768 for swin-t/s, 1024 for swin-b).
        """
        return self.forward_backbone(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class scores (no softmax).

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, num_classes).
        """
        return self.head(self.head_drop(self.forward_features(x)))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for layer in self.layers:
            layer.grad_checkpointing = enabled

    def clear_caches(self) -> None:
        """Free the cached window plans and attention masks (they are rebuilt on the next forward)."""
        for module in self.modules():
            if isinstance(module, Stage):
                module._plans.clear()
            elif isinstance(module, WindowAttention3D):
                module._mask_cache.clear()

    def set_reference_attention(self, enabled: bool = True) -> None:
        """Use the explicit official attention formula instead of SDPA (slower; for checks)."""
        for module in self.modules():
            if isinstance(module, WindowAttention3D):
                module.use_reference = enabled


def _init_weights(module: nn.Module) -> None:
    # Upstream uses trunc_normal_(std=0.02) with the default cut at +-2 (absolute), i.e. 100 standard
    # deviations: the same distribution as normal_, which is several times faster on big models.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def average_views(logits: torch.Tensor, mode: str = "prob", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Combine the scores of several views of one video, as mmaction's `average_clips` does.

    Args:
        logits: (V, K) raw scores of V views.
        mode: "prob" (softmax per view, then mean; the released configs) or "score" (mean of raw scores).
        weights: (V,) how many times each view counts (identical views computed once); None = 1 each.
            The weighted mean equals the plain mean over the repeated views.

    Returns:
        (K,) averaged scores.
    """
    if mode not in ("prob", "score"):
        raise ValueError(f"mode must be 'prob' or 'score', got {mode!r}")
    scores = logits.softmax(dim=-1) if mode == "prob" else logits  # (V, K)
    if weights is None:
        return scores.mean(dim=0)
    weights = weights.to(scores)
    return (scores * weights[:, None]).sum(dim=0) / weights.sum()
