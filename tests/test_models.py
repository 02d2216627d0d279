"""CoAtNet topology, sizes and the errors around building one."""

from __future__ import annotations

import pytest
import torch

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.coatnet import MBConv, RelativePositionBias, TransformerBlock, export_mode
from coatnet_edge.models.config import CoAtNetConfig
from coatnet_edge.models.profile import profile_config, profile_model
from coatnet_edge.models.registry import create_model, get_variant, list_variants

# Paper, Table 3: parameters (M) at 224 and "FLOPs" (multiply-adds, G).
PAPER = {"coatnet_0": (25, 4.2), "coatnet_1": (42, 8.4), "coatnet_2": (75, 15.7), "coatnet_3": (168, 34.7)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_variants_match_published_size(name: str) -> None:
    prof = profile_config(get_variant(name))
    params_m, gmacs = PAPER[name]
    assert abs(prof.params_m - params_m) / params_m < 0.05, prof
    assert abs(prof.gmacs - gmacs) / gmacs < 0.10, prof


def test_coatnet0_layout_is_c_c_t_t() -> None:
    model = create_model("coatnet_0")
    assert model.cfg.depths == (2, 2, 3, 5, 2) and model.cfg.dims == (64, 96, 192, 384, 768)
    kinds = [type(stage[0] if isinstance(stage, torch.nn.Sequential) else stage.blocks[0]).__name__
             for stage in list(model.stages)[1:]]
    assert kinds == ["MBConv", "MBConv", "TransformerBlock", "TransformerBlock"]
    assert sum(isinstance(m, MBConv) for m in model.modules()) == 2 + 3
    assert sum(isinstance(m, TransformerBlock) for m in model.modules()) == 5 + 2
    assert sum(isinstance(m, RelativePositionBias) for m in model.modules()) == 7


def test_edge_variants_are_small_and_ordered() -> None:
    profs = {n: profile_config(get_variant(n).replace(image_size=64, num_classes=12)) for n in list_variants()}
    assert profs["coatnet_pico"].macs * 2 < profs["coatnet_nano"].macs < profs["coatnet_0"].macs
    assert profs["coatnet_pico"].params < 1_000_000


def test_profile_of_built_model_matches_config_profile() -> None:
    model = create_model("coatnet_pico", image_size=64, num_classes=5)
    assert profile_model(model) == profile_config(model.cfg)
    assert profile_model(model).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "size"), [("coatnet_pico", 32), ("coatnet_pico", 64), ("coatnet_pico", 96),
                                            ("coatnet_nano", 128), ("coatnet_0", 224)])
def test_output_shapes_for_several_sizes(name: str, size: int) -> None:
    model = create_model(name, image_size=size, num_classes=7).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(2, 3, size, size))
        logits = model(torch.zeros(2, 3, size, size))
    assert feats.shape == (2, model.cfg.dims[-1], size // 32, size // 32)
    assert logits.shape == (2, 7)


@pytest.mark.parametrize("size", [64, 96, 224])
def test_relative_position_table_is_sized_from_input(size: int) -> None:
    model = create_model("coatnet_pico", image_size=size)
    tables = [m.table.shape[0] for m in model.modules() if isinstance(m, RelativePositionBias)]
    s3, s4 = size // 16, size // 32
    assert tables[0] == (2 * s3 - 1) ** 2 and tables[-1] == (2 * s4 - 1) ** 2


def test_relative_bias_depends_on_offset_only() -> None:
    bias = RelativePositionBias(num_heads=2, height=4, width=4)
    b = bias().detach()  # h, N, N
    # (0,0)->(1,1) and (2,2)->(3,3) share the same 2-D offset, so the same bias
    assert torch.equal(b[:, 0, 5], b[:, 10, 15])
    assert not torch.equal(b[:, 0, 5], b[:, 0, 1])


def test_export_mode_freezes_bias_and_restores() -> None:
    model = create_model("coatnet_pico", image_size=64).train()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)
    model.train()
    with export_mode(model):
        assert not model.training
        assert all(m.frozen is not None for m in model.modules() if isinstance(m, RelativePositionBias))
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected)
    assert model.training
    assert all(m.frozen is None for m in model.modules() if isinstance(m, RelativePositionBias))


def test_relative_bias_receives_gradient() -> None:
    model = create_model("coatnet_pico", image_size=64).train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    grads = [m.table.grad for m in model.modules() if isinstance(m, RelativePositionBias)]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("size", [100, 48, 0, 16])
def test_input_size_not_divisible_by_32_is_refused(size: int) -> None:
    with pytest.raises(CoatnetEdgeError, match=f"input size {size} is not a positive multiple of 32"):
        create_model("coatnet_pico", image_size=size)


def test_unknown_variant_lists_known_ones() -> None:
    with pytest.raises(CoatnetEdgeError) as err:
        create_model("coatnet_nanoo")
    message = str(err.value)
    assert "did you mean 'coatnet_nano'" in message
    for name in list_variants():
        assert name in message
    assert "\n" not in message


def test_config_round_trip_and_validation() -> None:
    cfg = get_variant("coatnet_nano").replace(num_classes=3, image_size=96)
    assert CoAtNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(CoatnetEdgeError, match="unknown model config keys: colour"):
        CoAtNetConfig.from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(CoatnetEdgeError, match="not a multiple of head_dim"):
        cfg.replace(dims=(32, 48, 96, 200, 384))
    with pytest.raises(CoatnetEdgeError, match="five channel widths"):
        cfg.replace(depths=(2, 2, 2))
