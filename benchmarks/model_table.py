"""The CoAtNet variants (params, MACs) and the shipped built-in models, written to docs/models.md.

    python benchmarks/model_table.py

Params and MACs are measured on the model as built (the same numbers `coatnet-edge models` prints):
one batch-1 forward under ``torch.utils.flop_counter.FlopCounterMode``, conv and matmul
multiply-accumulates = FLOPs / 2, element-wise ops not counted (as in the paper). The built-in
teacher and student rows are read from their manifests in ``coatnet_edge/assets/`` (written by
``benchmarks/train_builtin.py`` when it trained them, on the machine named there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from docpage import Machine, table, write_page  # the script folder is on sys.path

from coatnet_edge.data.synth import SynthConfig
from coatnet_edge.models.profile import profile_config
from coatnet_edge.models.registry import get_variant, list_variants
from coatnet_edge.stats import wilson

ASSETS = Path(__file__).resolve().parents[1] / "coatnet_edge" / "assets"
# Dai et al. 2021 (CoAtNet), ImageNet-1K models at 224 px: params and FLOPs as the paper reports them.
PAPER = {"coatnet_0": "25 M, 4.2 G", "coatnet_1": "42 M, 8.4 G", "coatnet_2": "75 M, 15.7 G",
         "coatnet_3": "168 M, 34.7 G"}

METHOD = """
Params and MACs of every registered variant, measured on the model as built: parameters counted, and
one batch-1 forward under `torch.utils.flop_counter.FlopCounterMode` with conv and matmul
multiply-accumulates = FLOPs / 2 (element-wise ops not counted, as in the paper). The paper column
is what Dai et al. 2021 report (params, "FLOPs") at 224 px, for reference. The built-in models' rows are read from the
manifests shipped beside their weights in `coatnet_edge/assets/`, written by
`benchmarks/train_builtin.py` when it trained them; their training time is from that run, on the
machine its manifest names (below), not this one.
"""

TOPOLOGY = """Our own implementation of the paper's topology (C-C-T-T): S0 stem of two 3x3 convs (stride 2); S1-S2
pre-activation MBConv (expansion 4, squeeze-excitation 0.25, GELU, stride in the depthwise conv of a
stage's first block, avg-pooled + 1x1-projected shortcut); S3-S4 pre-norm Transformer blocks with
relative attention (a learned per-head bias over the stage's whole feature map, indexed by 2-D
offset, added to the logits before softmax; head size 32, FFN x4, GELU; the first block downsamples
with `Proj(Pool(x)) + Attn(Pool(LN(x)))`); global average pool, LayerNorm, linear head. Any input
size divisible by 32 works; the relative-position tables are sized from it. Written to be exported:
the batch axis is the only dynamic one, attention is plain `MatMul -> Add(bias) -> Softmax -> MatMul`,
and under `coatnet_edge.models.coatnet.export_mode` the relative-position bias is a float constant.
"""


def variants() -> str:
    rows = []
    for name in list_variants():
        base = get_variant(name)
        big = profile_config(base.replace(image_size=224, num_classes=1000))
        edge = PAPER.get(name) is None
        small = profile_config(base.replace(image_size=64, num_classes=12)) if edge else None
        rows.append([name, "-".join(map(str, base.depths)), "-".join(map(str, base.dims)), f"{big.params_m:.2f} M",
                     f"{big.gmacs:.3f}", PAPER.get(name, "(edge size)"),
                     f"{small.params_m:.2f} M" if small else "-", f"{small.gmacs:.4f}" if small else "-"])
    return table(["variant", "blocks S0-S4", "channels S0-S4", "params @224, 1000 cls", "GMACs @224", "paper",
                  "params @64, 12 cls", "GMACs @64"], rows)


def builtin() -> tuple[str, str]:
    rows, machines = [], []
    for role in ("teacher", "student"):
        m = json.loads((ASSETS / f"builtin_{role}.manifest.json").read_text())
        r = m["recipe"]
        how = f"{r['epochs']} epochs" + (f" KD (alpha {r['kd_alpha']}, T {r['kd_temperature']})" if role == "student"
                                         else "")
        minutes = f"{m['train_seconds'] / 60:.0f} min" if m.get("train_seconds") else "-"
        rows.append([f"`builtin:{role}`", f"`{m['variant']}`", f"{m['params_m']:.2f} M", f"{m['gmacs'] * 1000:.1f}",
                     _top1_text(m["val_top1"]), how, minutes])
        cpu = m["environment"]["cpu"]
        machines.append(f"- {role}: {cpu['model']}, {cpu['logical_cores']} cores ({', '.join(cpu['isa'])}); "
                        f"torch {m['environment']['versions'].get('torch')}; weights sha256 {m['sha256'][:16]}...")
    return (table(["model", "variant", "params", "MMACs @64", "val top-1 (built-in val split, 95 % Wilson interval)",
                   "training", "training time"], rows), "\n".join(machines) + "\n")


def _top1_text(top1: float) -> str:
    """Top-1 on the built-in val split (the manifest's share of its images) with its Wilson 95 % interval."""
    images = SynthConfig().val_per_class * SynthConfig().num_classes
    share = wilson(round(top1 * images), images)
    return f"{100 * share.value:.2f} % [{100 * share.low:.1f}, {100 * share.high:.1f}]"


def main() -> None:
    machine, started = Machine(timed=False), time.perf_counter()
    variant_table = variants()
    pair, machines = builtin()
    print(variant_table)
    print(pair)
    write_page("models.md", title="The CoAtNet family and the built-in models", machine=machine, method=METHOD,
               sections=["## Variants\n", variant_table, TOPOLOGY, "## The built-in teacher and student\n",
                         "Trained by `python benchmarks/train_builtin.py --out runs/builtin --install` on the "
                         "built-in dataset (seed 0); usable anywhere a checkpoint is accepted as `builtin:teacher` "
                         "/ `builtin:student`.\n", pair, "Trained on (from the manifests):\n", machines],
               wall_s=time.perf_counter() - started)


if __name__ == "__main__":
    main()
