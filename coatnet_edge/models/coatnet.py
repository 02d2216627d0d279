"""CoAtNet (Dai et al. 2021): conv stem S0, MBConv S1-S2, relative-attention Transformer S3-S4.

Written to be exported: static feature-map sizes per input size, attention as plain
MatMul -> Add(bias) -> Softmax -> MatMul that ONNX Runtime, OpenVINO and TensorRT fuse, and the
relative-position bias turned into a float constant under :func:`export_mode` (no INT64 gather at
run time).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from coatnet_edge.models.config import CoAtNetConfig


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (identity at eval and export)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))


class Stem(nn.Module):
    """S0: 3x3 convs, the first with stride 2 (paper: two of them)."""

    def __init__(self, in_chans: int, dim: int, num_convs: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_chans, dim, 3, 2, 1)]
        for _ in range(num_convs - 1):
            layers += [nn.BatchNorm2d(dim), nn.GELU(), nn.Conv2d(dim, dim, 3, 1, 1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class MBConv(nn.Module):
    """Pre-activation inverted bottleneck: x + Proj(SE(DWConv(Conv(BN(x))))).

    A downsampling block strides its depthwise conv and takes a pooled + 1x1-projected shortcut.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, expand_ratio: float, se_ratio: float,
                 kernel_size: int = 3, drop_path: float = 0.0):
        super().__init__()
        mid = int(out_dim * expand_ratio)
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(in_dim, out_dim, 1))
        elif in_dim != out_dim:
            self.shortcut = nn.Conv2d(in_dim, out_dim, 1)
        else:
            self.shortcut = nn.Identity()
        self.pre_norm = nn.BatchNorm2d(in_dim)
        self.conv_expand = nn.Conv2d(in_dim, mid, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, max(1, int(in_dim * se_ratio)))
        self.conv_project = nn.Conv2d(mid, out_dim, 1)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = F.gelu(self.norm1(self.conv_expand(self.pre_norm(x))))
        x = F.gelu(self.norm2(self.conv_dw(x)))
        x = self.conv_project(self.se(x))
        return shortcut + self.drop_path(x)


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(N, N) index into a (2H-1)(2W-1) table: the 2-D offset between every pair of positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # 2, N, N
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


class RelativePositionBias(nn.Module):
    """Learned per-head bias over the whole feature map, added to attention logits before softmax."""

    def __init__(self, num_heads: int, height: int, width: int):
        super().__init__()
        self.num_heads = num_heads
        self.table = nn.Parameter(torch.zeros((2 * height - 1) * (2 * width - 1), num_heads))
        self.register_buffer("index", relative_position_index(height, width), persistent=False)
        self.frozen: torch.Tensor | None = None
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self) -> torch.Tensor:
        if self.frozen is not None:
            return self.frozen
        n = self.index.shape[0]
        return self.table[self.index.reshape(-1)].reshape(n, n, self.num_heads).permute(2, 0, 1)  # h, N, N

    def freeze(self, frozen: bool) -> None:
        """Hold the gathered bias as a plain float tensor so exporters write it as a constant."""
        self.frozen = self.forward().detach().clone() if frozen else None
        if self.frozen is not None:
            self.frozen = self.frozen.contiguous()


class RelativeAttention(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, head_dim: int, feature_size: int):
        super().__init__()
        self.num_heads = out_dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.num_tokens = feature_size * feature_size  # static, so the batch axis is the only dynamic one
        self.qkv = nn.Linear(in_dim, out_dim * 3)
        self.rel_pos = RelativePositionBias(self.num_heads, feature_size, feature_size)
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.num_tokens  # python ints + reshape(-1, ...) keep Shape/Gather ops out of the graph
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B, h, N, d
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1)) + self.rel_pos()  # B, h, N, N
        attn = attn.softmax(dim=-1)
        x = torch.matmul(attn, v).transpose(1, 2).reshape(-1, n, self.num_heads * self.head_dim)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm relative-attention block on tokens (B, N, C).

    The first block of a stage downsamples: x = Proj(Pool(x)) + Attn(Pool(LN(x))), taking NCHW in.
    """

    def __init__(self, in_dim: int, out_dim: int, head_dim: int, mlp_ratio: float, feature_size: int,
                 downsample: bool, drop_path: float = 0.0):
        super().__init__()
        self.downsample = downsample
        self.in_dim, self.out_dim, self.num_tokens = in_dim, out_dim, feature_size * feature_size
        if downsample:
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.shortcut = nn.Conv2d(in_dim, out_dim, 1)
        self.norm1 = nn.LayerNorm(in_dim)
        self.attn = RelativeAttention(in_dim, out_dim, head_dim, feature_size)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:  # x: B, C, H, W
            n = self.num_tokens
            shortcut = self.shortcut(self.pool(x)).reshape(-1, self.out_dim, n).transpose(1, 2)
            y = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            y = self.pool(y).reshape(-1, self.in_dim, n).transpose(1, 2)  # B, N, C
            x = shortcut + self.drop_path(self.attn(y))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerStage(nn.Module):
    def __init__(self, blocks: list[TransformerBlock], feature_size: int):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.feature_size = feature_size
        self.dim = blocks[-1].out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)  # B, N, C
        return x.transpose(1, 2).reshape(-1, self.dim, self.feature_size, self.feature_size)


class CoAtNet(nn.Module):
    """C-C-T-T CoAtNet. ``stages[0]`` is the stem; ``forward_features`` returns the S4 map (NCHW)."""

    def __init__(self, cfg: CoAtNetConfig):
        super().__init__()
        self.cfg = cfg
        total_blocks = sum(cfg.depths[1:])
        rates = [cfg.drop_path_rate * i / max(total_blocks - 1, 1) for i in range(max(total_blocks, 1))]
        stages: list[nn.Module] = [Stem(cfg.in_chans, cfg.dims[0], cfg.depths[0])]
        block_id = 0
        for s in range(1, 5):
            in_dim = cfg.dims[s - 1]
            blocks: list[nn.Module] = []
            for i in range(cfg.depths[s]):
                first = i == 0
                dim_in = in_dim if first else cfg.dims[s]
                if s <= 2:
                    c = cfg.conv
                    blocks.append(MBConv(dim_in, cfg.dims[s], 2 if first else 1, c.expand_ratio, c.se_ratio,
                                         c.kernel_size, rates[block_id]))
                else:
                    t = cfg.transformer
                    blocks.append(TransformerBlock(dim_in, cfg.dims[s], t.head_dim, t.mlp_ratio,
                                                   cfg.feature_size(s), first, rates[block_id]))
                block_id += 1
            stages.append(nn.Sequential(*blocks) if s <= 2 else TransformerStage(blocks, cfg.feature_size(s)))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(cfg.dims[-1])
        self.head = nn.Linear(cfg.dims[-1], cfg.num_classes)
        self.apply(_init_weights)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x.mean((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@contextlib.contextmanager
def export_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with every relative-position bias frozen into a float constant; restores on exit."""
    was_training = model.training
    biases = [m for m in model.modules() if isinstance(m, RelativePositionBias)]
    model.eval()
    try:
        with torch.no_grad():
            for b in biases:
                b.freeze(True)
        yield model
    finally:
        for b in biases:
            b.freeze(False)
        model.train(was_training)
