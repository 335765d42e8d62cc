"""Strict loading of a local weights file into a timm ``features_only`` model.

Why not timm's own loading: ``timm.create_model(name, features_only=True, pretrained=True)``
loads NON-strictly (``timm/models/_builder.py``: ``load_pretrained`` gets ``num_classes=0``, drops
the classifier and sets ``strict=False``; missing and unexpected keys are only logged). A file
whose tensors sit under ``{"model_state": ...}`` or behind a ``foo.`` prefix builds without an
error and trains from random init, while the log says the file was loaded.

What :func:`create_features` does instead:

1. read the file (``.safetensors`` with safetensors, anything else with
   ``torch.load(weights_only=True)``: no code runs);
2. unwrap it (:func:`extract_state_dict`): a container key (``state_dict_ema`` > ``model_ema`` >
   ``state_dict`` > ``model`` as timm prefers, then ``model_state``, ``model_state_dict``,
   ``net``, ``weights``, ``params``, or the only child holding tensors), the ``module.`` /
   ``_orig_mod.`` prefixes of DDP / ``torch.compile``, and, when the keys do not fit as they are,
   one prefix shared by every key;
3. build the model with timm, catching timm's ``load_pretrained`` call: the one place where the
   unwrapped model and the architecture's checkpoint filter (which converts e.g. Microsoft's Swin
   releases) are both at hand;
4. load strictly: every tensor the ``features_only`` model holds (found by identity, whatever
   timm's wrapper renamed) must be in the file with its shape, and the file may hold no key the
   full classification architecture lacks. Keys of parts ``features_only`` drops (classifier,
   final norm, stages after the last ``out_indices``) are reported as unused, never an error, so
   an ImageNet-22k file with its 21,841-class head loads.

Anything else raises :class:`WeightsError` naming a few of the keys; nothing is loaded then.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SmallboxError

WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "model_state", "model_state_dict",
                "net", "weights", "params")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
NOT_MODEL_KEYS = ("optimizer", "optimizer_state_dict", "optim", "scheduler", "lr_scheduler", "scaler")
_INTERCEPT = threading.Lock()


class WeightsError(SmallboxError):
    """A weights file that does not fit the backbone (never silently ignored)."""


@dataclass
class LoadReport:
    """What :func:`create_features` loaded from ``path``."""

    path: str
    container: str = ""  # e.g. "['model_state']"
    stripped_prefix: str = ""  # e.g. "module." or "foo."
    loaded: list[str] = field(default_factory=list)  # the file's names of the tensors now in the model
    unused: list[str] = field(default_factory=list)  # the architecture's, dropped by features_only

    def summary(self) -> str:
        where = f" from {self.container}" if self.container else ""
        prefix = f", prefix {self.stripped_prefix!r} stripped" if self.stripped_prefix else ""
        unused = f", {len(self.unused)} unused ({_few(self.unused, 3)})" if self.unused else ""
        return f"{self.path}{where}: {len(self.loaded)} tensors loaded{prefix}{unused}"


def _few(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def read_checkpoint(path) -> object:
    """The object in a local weights file (nothing is downloaded)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a pickled module, an Ultralytics checkpoint, not a torch file at all
        raise WeightsError(f"{path}: not a state dict that loads with weights_only=True ({type(e).__name__}: "
                           f"{str(e)[:160]}); save one with torch.save(model.state_dict(), ...) or as .safetensors") from None


def _tensors(obj) -> dict:
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}


def _holds_tensors(obj, depth: int = 3) -> bool:
    return bool(_tensors(obj)) or (depth > 0 and isinstance(obj, dict)
                                   and any(_holds_tensors(v, depth - 1) for v in obj.values()))


def extract_state_dict(obj, path="") -> tuple[dict, str, str]:
    """``(state_dict, container, stripped_prefix)`` out of a checkpoint object (module doc, step 2;
    the shared prefix is left to :func:`create_features`, which tries the keys as they are first)."""
    container = []
    while not (isinstance(obj, dict) and obj and len(_tensors(obj)) == len(obj)):
        if not isinstance(obj, dict) or len(container) > 3:
            raise WeightsError(f"{path}: holds a {type(obj).__name__}{' under ' + str(container) if container else ''}, "
                               "not a state dict")
        children = [k for k, v in obj.items() if isinstance(v, dict) and k not in NOT_MODEL_KEYS and _holds_tensors(v)]
        if not children and _tensors(obj):  # a state dict with a few non-tensor entries ('_metadata', ...)
            obj = _tensors(obj)
            break
        pick = next((k for k in WRAPPER_KEYS if k in children), children[0] if len(children) == 1 else None)
        if pick is None:
            raise WeightsError(f"{path}: no state dict found: top-level keys {_few(map(str, obj), 10)}; expected "
                               f"the tensors themselves or one of {list(WRAPPER_KEYS)}")
        container.append(pick)
        obj = obj[pick]
    sd, stripped = dict(obj), ""
    for _ in range(2):  # DDP's and torch.compile's wrappers, in either order
        for p in WRAPPER_PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd, stripped = {k[len(p):]: v for k, v in sd.items()}, stripped + p
    return sd, "".join(f"[{c!r}]" for c in container), stripped


def _prefix_counts(sd: dict) -> str:
    counts = {}
    for k in sd:
        counts[k.split(".", 1)[0]] = counts.get(k.split(".", 1)[0], 0) + 1
    return ", ".join(f"{p!r}: {n}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8])


def _shared_prefix(keys) -> str:
    firsts = {k.split(".", 1)[0] + "." if "." in k else "" for k in keys}
    return firsts.pop() if len(firsts) == 1 else ""


@contextlib.contextmanager
def _catch_load_pretrained(handler):
    """timm's ``build_model_with_cfg`` calls ``_builder.load_pretrained(model, pretrained_cfg,
    num_classes, in_chans, filter_fn, strict, ...)`` on the unwrapped model; ``handler`` takes its
    place for the duration (under a lock: the attribute is process-global)."""
    import timm.models._builder as builder

    if not callable(getattr(builder, "load_pretrained", None)):
        raise RuntimeError("timm.models._builder.load_pretrained is gone: smallbox's strict loader needs updating "
                           f"for timm {__import__('timm').__version__}")
    with _INTERCEPT:
        original, builder.load_pretrained = builder.load_pretrained, handler
        try:
            yield
        finally:
            builder.load_pretrained = original


def _architecture_keys(name: str, create_kwargs: dict) -> set[str]:
    """Every key of the full classification model (built on the meta device: no memory, no init)."""
    import timm

    kwargs = {k: v for k, v in create_kwargs.items() if k not in ("features_only", "out_indices")}
    try:
        return set(timm.create_model(name.split(".")[0], pretrained=False, device="meta", **kwargs).state_dict())
    except Exception:  # an architecture that cannot be built on the meta device: build it for real
        return set(timm.create_model(name.split(".")[0], pretrained=False, **kwargs).state_dict())


def create_features(name: str, weights=None, **create_kwargs):
    """``(model, report)``: ``timm.create_model(name, **create_kwargs)`` (a ``features_only``
    model) with the tensors of the local file ``weights`` loaded strictly; ``report`` is None
    without weights. Raises :class:`WeightsError` when the file does not fit."""
    import timm

    if not weights:
        return timm.create_model(name, pretrained=False, **create_kwargs), None
    path = str(weights)
    seen = {}

    def handler(model, pretrained_cfg=None, num_classes=1000, in_chans=3, filter_fn=None, strict=True, cache_dir=None):
        seen.update(model=model, filter=filter_fn, names={id(t): k for k, t in model.state_dict(keep_vars=True).items()},
                    shapes={k: tuple(t.shape) for k, t in model.state_dict().items()})

    with _catch_load_pretrained(handler):  # pretrained=True only makes timm call the handler: nothing is read
        features = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path}, **create_kwargs)
    if "model" not in seen:
        raise RuntimeError(f"timm did not call load_pretrained for {name}: cannot load {path} strictly")
    sd, container, stripped = extract_state_dict(read_checkpoint(path), path)
    own = features.state_dict(keep_vars=True)
    needed = {seen["names"][id(t)]: k for k, t in own.items()}  # the architecture's name -> the features model's
    known = _architecture_keys(name, create_kwargs) | set(seen["shapes"])
    report = LoadReport(path, container, stripped)
    problems = []
    for prefix in dict.fromkeys(["", _shared_prefix(sd)]):
        candidate = {k[len(prefix):]: v for k, v in sd.items()}
        if seen["filter"] is not None:
            try:
                candidate = seen["filter"](candidate, seen["model"])
            except Exception as e:  # a filter choking on foreign keys is one more misfit
                problems.append(f"{_as(prefix)}: timm's checkpoint filter failed ({type(e).__name__}: {str(e)[:120]})")
                continue
        missing = [k for k in needed if k not in candidate]
        shape = [f"{k} {tuple(candidate[k].shape)} vs {seen['shapes'][k]}" for k in needed
                 if k in candidate and tuple(candidate[k].shape) != seen["shapes"][k]]
        unexpected = [k for k in candidate if k not in known]
        if not (missing or shape or unexpected):
            with torch.no_grad():
                for key, own_key in needed.items():
                    own[own_key].copy_(candidate[key])
            report.stripped_prefix += prefix
            report.loaded, report.unused = sorted(needed), sorted(k for k in candidate if k not in needed)
            return features, report
        problems.append(_misfit(prefix, missing, shape, unexpected, len(needed)))
    if set(sd) == set(own) and all(sd[k].shape == own[k].shape for k in own):  # saved from a features model
        features.load_state_dict(sd)
        report.loaded = sorted(own)
        return features, report
    where = f" (unwrapped from {container})" if container else ""
    raise WeightsError(f"{name}: weights {path}{where} do not fit the backbone, nothing was loaded; "
                       f"{' | '.join(problems)}. Key prefixes in the file: {_prefix_counts(sd)}")


def _as(prefix: str) -> str:
    return f"with prefix {prefix!r} stripped" if prefix else "with the keys as they are"


def _misfit(prefix, missing, shape, unexpected, n_needed) -> str:
    parts = [_as(prefix) + ":"]
    if missing:
        parts.append(f"{len(missing)} of {n_needed} backbone tensors missing ({_few(missing)})")
    if shape:
        parts.append(f"{len(shape)} of another shape ({_few(shape, 3)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
    return " ".join(parts)
