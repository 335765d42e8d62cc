"""The shared timm builder (smallbox.adapters.timm_features) in both paths: no attention across
image borders for Swin (timm issue #2438), a no-op where the windows already tile, NCHW shapes,
and the torchvision path's frozen BatchNorm / early stages.

The leak test is exact: redraw input rows [0, 8) (or columns); every feature index beyond the last
one a correctly masked Swin could reach (swin_window.reach_bound, from the model's own windows)
must be bit-identical. timm's -100 mask makes masked attention weights exp(-100) ~ 4e-44 relative,
far below float32 rounding, so "unchanged" means 0.0, not a tolerance."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.layers import FrozenBatchNormAct2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from smallbox.adapters.swin_window import reach_bound, window_multiple
from smallbox.adapters.timm_features import TimmFeatures
from smallbox.adapters.tv.models import TimmFPNBackbone, build_backbone
from smallbox.adapters.yolo.layers import TimmBackbone

torch.set_num_threads(2)
SWIN = "swin_tiny_patch4_window7_224"
# Two blocks a stage, so every stage has a shifted block as Swin-T has (one block a stage has none).
TINY = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2]}
CASES = [(640, 640, 0), (1024, 1024, 0), (640, 480, 0), (640, 480, 1)]  # (H, W, axis: 0 rows, 1 columns)


@torch.no_grad()
def far_change(forward, bounds: dict, strides, H: int, W: int, axis: int, p: int = 8) -> list[dict]:
    """Run ``forward`` on a random image and on the same image with its first ``p`` rows
    (``axis=0``) or columns redrawn; per output map: ``far`` = indices beyond ``bounds[stride]``,
    ``far_max`` = the largest change there (must be 0), ``near_max`` = within the bound (> 0)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, H, W, generator=g)
    x2 = x.clone()
    x2.narrow(2 + axis, 0, p).copy_(torch.randn(x2.narrow(2 + axis, 0, p).shape, generator=g))
    rows = []
    for a, b, s in zip(forward(x), forward(x2), strides):
        d, m = (a - b).abs(), bounds[s]
        n = d.shape[2 + axis]
        far = d.narrow(2 + axis, m + 1, n - m - 1) if m + 1 < n else d[..., :0, :0]
        rows.append({"stride": s, "far": far.shape[2 + axis], "far_max": float(far.max()) if far.numel() else 0.0,
                     "near_max": float(d.narrow(2 + axis, 0, min(m + 1, n)).max())})
    return rows


def assert_no_leak(rows):
    assert sum(r["far"] for r in rows) > 0, rows  # there is something to check
    assert all(r["far_max"] == 0.0 for r in rows), rows
    assert all(r["near_max"] > 0.0 for r in rows), rows  # the change does reach what it may


def fpn_bounds(body_bounds: dict, strides) -> dict:
    """Reach of torchvision's FPN outputs: lateral 1x1 convs, nearest 2x upsampling (row r reads
    r // 2 of the coarser map), a 3x3 output conv (+1); LastLevelMaxPool (kernel 1, stride 2)."""
    inner, out = {}, {}
    for s in reversed(strides):
        inner[s] = max(body_bounds[s], 2 * inner[2 * s] + 1) if 2 * s in inner else body_bounds[s]
        out[s] = inner[s] + 1
    out[2 * strides[-1]] = out[strides[-1]] // 2
    return out


@pytest.fixture(scope="module")
def yolo_layer():
    torch.manual_seed(0)
    return TimmBackbone(SWIN, [0, 1, 2, 3], TINY).eval()


@pytest.fixture(scope="module")
def tv_backbone():
    torch.manual_seed(0)
    return TimmFPNBackbone(SWIN, (0, 1, 2, 3), 16, LastLevelMaxPool(), kwargs=TINY).eval()


def test_window_multiple_and_reach():
    body = timm.create_model(SWIN, features_only=True, strict_img_size=False, **TINY)
    assert window_multiple(body) == (112, 112)  # stages 1-3 shift (stride x window: 28, 56, 112); stage 4 never
    assert window_multiple(timm.create_model("resnet18", features_only=True)) == (1, 1)
    # 8 rows at patch 4 -> tokens 0-1; stage 1: plain window [0, 7) -> 6, shifted [3, 10) -> 9; ...
    assert reach_bound(body, 8) == {4: 9, 8: 9, 16: 9, 32: 6}


def test_timm_alone_leaks(yolo_layer):
    """What the builder fixes (fails once timm fixes #2438): timm's own Swin at 640 lets the top
    rows change the bottom rows."""
    body = yolo_layer.body
    rows = far_change(lambda x: [f.permute(0, 3, 1, 2) for f in body(x)], reach_bound(body, 8), yolo_layer.strides, 640, 640, 0)
    assert max(r["far_max"] for r in rows) > 1e-4, rows


@pytest.mark.parametrize("H,W,axis", [*CASES, (2048, 2048, 0)])
def test_yolo_layer_no_leak(yolo_layer, H, W, axis):
    assert_no_leak(far_change(yolo_layer, reach_bound(yolo_layer.body, 8, axis), yolo_layer.strides, H, W, axis))


@pytest.mark.parametrize("H,W,axis", CASES)
def test_tv_backbone_no_leak(tv_backbone, H, W, axis):
    """The torchvision path, checked on the FPN levels the detector heads read."""
    strides = tv_backbone.strides
    bounds = fpn_bounds(reach_bound(tv_backbone.body, 8, axis), strides)
    assert_no_leak(far_change(lambda x: list(tv_backbone(x).values()), bounds, [*strides, 2 * strides[-1]], H, W, axis))


def test_real_swin_t_no_leak():
    """The real Swin-T architecture (random init; at 320 to stay quick, 80 tokens = 11 windows
    and 3 rows): leaks in timm, none through the layer."""
    torch.manual_seed(0)
    layer = TimmBackbone(SWIN, [1, 2, 3]).eval()
    bounds = reach_bound(layer.body, 8)
    before = far_change(lambda x: [f.permute(0, 3, 1, 2) for f in layer.body(x)], bounds, layer.strides, 320, 320, 0)
    assert max(r["far_max"] for r in before) > 1e-3, before
    assert_no_leak(far_change(layer, bounds, layer.strides, 320, 320, 0))


@pytest.mark.parametrize("size", [(224, 224), (448, 448), (672, 672), (224, 448)])
def test_padding_is_a_no_op_where_windows_tile(yolo_layer, size):
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        native = [f.permute(0, 3, 1, 2) for f in yolo_layer.body((x - yolo_layer.mean) / yolo_layer.std)]
        ours = yolo_layer(x)
    assert all(torch.equal(a, b) for a, b in zip(native, ours))


@pytest.mark.parametrize("H,W", [(640, 640), (480, 640), (100, 60)])
def test_maps_are_nchw_of_ceil_size(yolo_layer, H, W):
    with torch.no_grad():
        maps = yolo_layer(torch.zeros(1, 3, H, W))
    assert [tuple(m.shape[1:]) for m in maps] == [(c, math.ceil(H / s), math.ceil(W / s))
                                                  for c, s in zip(yolo_layer.channels, yolo_layer.strides)]


def test_window_pad_off_reproduces_timm(yolo_layer):
    layer = TimmBackbone(SWIN, [0, 1, 2, 3], {**TINY, "window_pad": False}).eval()
    layer.load_state_dict(yolo_layer.state_dict())
    x = torch.rand(1, 3, 640, 480)
    with torch.no_grad():
        native = [f.permute(0, 3, 1, 2) for f in yolo_layer.body((x - yolo_layer.mean) / yolo_layer.std)]
        assert all(torch.equal(a, b) for a, b in zip(native, layer(x)))


# --- torchvision path: frozen BatchNorm and early stages with weights -----------------------


def _tv_settings(backbone, **kw):
    return {"arch": "faster_rcnn", "backbone": backbone, "backbone_weights": None, "weights": None, "trainable_layers": 3,
            "out_indices": None, "fpn_channels": 16, "backbone_kwargs": {}, **kw}


def _trains(model, prefix):
    return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix)}


@pytest.mark.parametrize("name,frozen,trained", [
    ("resnet18", ["body.conv1.", "body.layer1."], ["body.layer2.", "body.layer3.", "body.layer4."]),  # torchvision's rule
    ("efficientnet_b3", ["body.conv_stem.", "body.blocks.0.", "body.blocks.1."], ["body.blocks.2.", "body.blocks.6."]),
])
def test_tv_pretrained_timm_cnn_freezes_batchnorm_and_early_stages(tmp_path, name, frozen, trained):
    torch.manual_seed(0)
    full = timm.create_model(name)
    with torch.no_grad():  # statistics that are not the init's, so keeping them is visible
        for m in full.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
    torch.save(full.state_dict(), tmp_path / "w.pth")
    bb = build_backbone(_tv_settings(f"timm:{name}", backbone_weights=str(tmp_path / "w.pth")))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    assert sum(isinstance(m, (FrozenBatchNorm2d, FrozenBatchNormAct2d)) for m in bb.modules()) == bb.frozen_bn > 0
    assert all(_trains(bb, p) == {False} for p in frozen) and all(True in _trains(bb, p) for p in trained)
    assert _trains(bb, "fpn.") == {True}
    # frozen BN keeps the file's statistics in train mode: the maps equal timm's model in eval mode
    ref = timm.create_model(name, features_only=True, out_indices=(-4, -3, -2, -1), pretrained=True,
                            pretrained_cfg_overlay={"file": str(tmp_path / "w.pth")}).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(TimmFeatures.forward(bb.train(), x), ref(x)))
    # a checkpoint's model is rebuilt with the same structure, without the file
    assert set(build_backbone(_tv_settings(f"timm:{name}", backbone_weights="gone.pth"), read_weights=False).state_dict()) == set(bb.state_dict())


def test_tv_random_init_trains_everything_with_live_batchnorm():
    bb = build_backbone(_tv_settings("timm:resnet18"))
    assert bb.frozen_bn == 0 and any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    assert all(p.requires_grad for p in bb.parameters())


def test_tv_swin_has_no_batchnorm_the_stage_rule_applies():
    """Swin normalises with LayerNorm (no batch statistics): only the stage rule applies; 3 of its
    4 levels train (patch embedding and stage 1 frozen), trainable_layers=4 trains all."""
    bb = build_backbone(_tv_settings(f"timm:{SWIN}", weights="detector.pth", backbone_kwargs=TINY), read_weights=False)
    assert bb.frozen_bn == 0
    assert _trains(bb, "body.patch_embed.") == _trains(bb, "body.layers_0.") == {False}
    assert all(_trains(bb, f"body.layers_{i}.") == {True} for i in (1, 2, 3))
    bb = build_backbone(_tv_settings(f"timm:{SWIN}", weights="detector.pth", trainable_layers=4, backbone_kwargs=TINY),
                        read_weights=False)
    assert all(p.requires_grad for p in bb.parameters())
