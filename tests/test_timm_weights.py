"""Strict loading of local backbone weights (smallbox.adapters.timm_weights) for Swin, ResNet and
EfficientNet-B3, in both paths.

Checkpoints are seeded random ``timm.create_model(name).state_dict()``s (no downloads). The
reference is timm's own ``pretrained=True, pretrained_cfg_overlay={"file": ...}`` loading, which
is right for a plain state dict and silently random for a wrapped or prefixed one."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import timm
import torch
from safetensors.torch import save_file

from smallbox.adapters.timm_features import TimmFeatures
from smallbox.adapters.timm_weights import WeightsError, create_features
from smallbox.adapters.tv.models import build_backbone
from smallbox.adapters.yolo.layers import TimmBackbone
from smallbox.errors import SmallboxError

torch.set_num_threads(2)
TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
CASES = {  # name: (timm.create_model kwargs, out_indices, input size)
    "swin_tiny_patch4_window7_224": (TINY_SWIN, (1, 2, 3), 224),
    "resnet18": ({}, (1, 2, 3, 4), 96),
    "efficientnet_b3": ({}, (2, 3, 4), 96),
}
HEADS = ("head.", "fc.", "classifier.", "conv_head.", "bn2.", "norm.")  # what features_only drops


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """A seeded random checkpoint of one architecture, an input and timm's features of the plain file."""
    name = request.param
    kwargs, out_indices, size = CASES[name]
    torch.manual_seed(0)
    full = timm.create_model(name, **kwargs)
    with torch.no_grad():  # BN statistics unlike the init's, so loading them is visible
        for m in full.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
    sd = {k: v.clone() for k, v in full.state_dict().items()}
    folder = tmp_path_factory.mktemp(name)
    torch.save(sd, folder / "plain.pth")
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    ref = _features(_timm_loads(name, kwargs, out_indices, folder / "plain.pth"), x)
    return SimpleNamespace(name=name, kwargs=kwargs, out_indices=out_indices, folder=folder, sd=sd, x=x, ref=ref)


def _timm_loads(name, kwargs, out_indices, path):
    return timm.create_model(name, features_only=True, out_indices=out_indices, pretrained=True,
                             pretrained_cfg_overlay={"file": str(path)}, **kwargs)


@torch.no_grad()
def _features(model, x):
    nhwc = str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")
    return [f.permute(0, 3, 1, 2) if nhwc else f for f in model.eval()(x)]


def _layer(case, weights):
    return TimmBackbone(case.name, list(case.out_indices), {**case.kwargs, "weights": str(weights), "normalize": False}).eval()


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


WRAPPED = {
    "model_state": lambda sd: {"model_state": sd, "epoch": 3},
    "foo_prefix": lambda sd: {"foo." + k: v for k, v in sd.items()},
    "ddp_in_state_dict": lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
    "ema_first": lambda sd: {"model": {k: torch.zeros_like(v) for k, v in sd.items()}, "state_dict_ema": sd},
    "nested_with_optimizer": lambda sd: {"checkpoint": {"model_state_dict": sd}, "optimizer": {"state": {}}},
}


def test_plain_files_load_as_timm_loads_them(case):
    layer = _layer(case, case.folder / "plain.pth")
    assert _equal(layer(case.x), case.ref)
    assert layer.report.loaded and any(k.startswith(HEADS) for k in layer.report.unused)
    save_file({k: v.contiguous() for k, v in case.sd.items()}, str(case.folder / "plain.safetensors"))
    assert _equal(_layer(case, case.folder / "plain.safetensors")(case.x), case.ref)
    torch.manual_seed(123)  # not trivially equal: random init differs
    random_init = TimmBackbone(case.name, list(case.out_indices), {**case.kwargs, "normalize": False}).eval()
    assert not _equal(random_init(case.x), case.ref)


@pytest.mark.parametrize("wrap", list(WRAPPED))
def test_wrapped_and_prefixed_files_load(case, wrap):
    path = case.folder / f"{wrap}.pth"
    torch.save(WRAPPED[wrap](case.sd), path)
    layer = _layer(case, path)
    assert _equal(layer(case.x), case.ref), layer.report.summary()
    assert "tensors loaded" in layer.describe_backbone()
    if wrap == "model_state":
        assert layer.report.container == "['model_state']"
    if wrap == "foo_prefix":
        assert layer.report.stripped_prefix == "foo."


@pytest.mark.parametrize("wrap", ["model_state", "foo_prefix"])
def test_timm_alone_silently_trains_from_random_init(case, wrap):
    """The defect the strict loader removes: timm builds from these files without an error (Swin's
    checkpoint filter trips over 'foo.'-prefixed keys) and the features are not the file's."""
    path = case.folder / f"{wrap}.pth"
    torch.save(WRAPPED[wrap](case.sd), path)
    try:
        got = _features(_timm_loads(case.name, case.kwargs, case.out_indices, path), case.x)
    except AttributeError:
        assert case.name.startswith("swin") and wrap == "foo_prefix"
    else:
        assert not _equal(got, case.ref)


def test_misfits_stop_the_build_naming_keys(case):
    backbone_keys = [k for k in case.sd if not k.startswith(HEADS)]
    dropped = backbone_keys[3:6]
    torch.save({k: v for k, v in case.sd.items() if k not in dropped}, case.folder / "missing.pth")
    with pytest.raises(WeightsError, match="3 of .* backbone tensors missing") as e:
        _layer(case, case.folder / "missing.pth")
    assert all(k in str(e.value) for k in dropped) and "nothing was loaded" in str(e.value)

    torch.save({**case.sd, "bogus.weight": torch.zeros(2)}, case.folder / "unexpected.pth")
    with pytest.raises(WeightsError, match=r"1 unexpected \(bogus\.weight\)"):
        _layer(case, case.folder / "unexpected.pth")

    key = next(k for k in backbone_keys if case.sd[k].ndim >= 2)
    torch.save({**case.sd, key: torch.zeros(*[n + 1 for n in case.sd[key].shape])}, case.folder / "shape.pth")
    with pytest.raises(WeightsError, match=f"1 of another shape \\({key}"):
        _layer(case, case.folder / "shape.pth")

    detector = {**{"backbone." + k: v for k, v in case.sd.items()}, "head.cls.weight": torch.zeros(3, 4)}
    torch.save({"model": detector}, case.folder / "detector.pth")
    with pytest.raises(WeightsError, match="'backbone': .*'head': 1"):  # several prefixes: the file's are listed
        _layer(case, case.folder / "detector.pth")


def test_another_head_size_is_fine(case):
    """An ImageNet-22k file (21,841 classes) loads: features_only has no head."""
    in22k = {k: torch.zeros(21841, *v.shape[1:]) if k.startswith(("head.fc.", "fc.", "classifier.")) else v
             for k, v in case.sd.items()}
    torch.save(in22k, case.folder / "in22k.pth")
    assert _equal(_layer(case, case.folder / "in22k.pth")(case.x), case.ref)


def test_file_saved_from_a_features_model_loads(case):
    body, _ = create_features(case.name, case.folder / "plain.pth", features_only=True, out_indices=case.out_indices,
                              **case.kwargs)
    torch.save(body.state_dict(), case.folder / "features.pth")
    assert _equal(_layer(case, case.folder / "features.pth")(case.x), case.ref)


def test_tv_path_loads_strictly_too(case):
    settings = {"arch": "faster_rcnn", "backbone": f"timm:{case.name}",
                "backbone_weights": str(case.folder / "model_state.pth"), "weights": None, "trainable_layers": 3, "out_indices": list(case.out_indices), "fpn_channels": 16,
                "backbone_kwargs": case.kwargs}
    torch.save({"model_state": case.sd}, case.folder / "model_state.pth")
    bb = build_backbone(settings).eval()
    with torch.no_grad():
        maps = TimmFeatures.forward(bb, case.x)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(maps, case.ref))  # frozen BN: same statistics
    torch.save({k: v for k, v in case.sd.items() if k != next(iter(case.sd))}, case.folder / "tv-missing.pth")
    with pytest.raises(SmallboxError, match=f"model.backbone_weights=.*tv-missing.pth.*{next(iter(case.sd))}"):
        build_backbone({**settings, "backbone_weights": str(case.folder / "tv-missing.pth")})


def test_a_swin_release_in_microsoft_layout_is_converted(tmp_path):
    """Microsoft's own release (patch merging at the END of a stage, ``head.weight``, under
    ``model``) goes through timm's checkpoint filter, as in timm's own loading."""
    name = "swin_tiny_patch4_window7_224"
    torch.manual_seed(0)
    sd = timm.create_model(name, **TINY_SWIN).state_dict()
    release = {re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
               .replace("head.fc.", "head."): v for k, v in sd.items()}
    assert "layers.0.downsample.reduction.weight" in release
    torch.save({"model": release}, tmp_path / "ms.pth")
    torch.save(sd, tmp_path / "timm.pth")
    x = torch.rand(1, 3, 224, 224)
    ref = _features(_timm_loads(name, TINY_SWIN, (1, 2, 3), tmp_path / "timm.pth"), x)
    layer = TimmBackbone(name, [1, 2, 3], {**TINY_SWIN, "weights": str(tmp_path / "ms.pth"), "normalize": False}).eval()
    assert _equal(layer(x), ref)
