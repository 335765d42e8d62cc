"""Simulated training runs scored with REAL COCO matching: the data of the calibration suite
(tests/test_calibration.py, bench/bench_calibration.py).

Three levels of randomness, as in a real benchmark:

* the **test set** (:class:`World`): ``n_images`` images drawn from an image population. Each image
  has a latent difficulty, each ground-truth box a difficulty and a fixed "luck" (whether a detector
  of given strength finds it) and a fixed localisation error direction; each image has a few
  background patches that may become false positives. Box sides are log-uniform in 6..160 px, so
  about half the boxes are COCO-small and AP_small rests on a few hundred boxes.
* the **run** (a seed) of a recipe of quality ``q``: a run effect ``u ~ N(0, sigma_run)`` shifts
  the strength of all of the run's detections (more boxes found, tighter boxes, better-ranked
  scores, fewer false positives); a small per-run, per-box noise makes two runs disagree on
  single images even with equal ``u`` (run x image interaction).
* the **recipe profile** ``rho``: below 1 it mixes the image and box latents with independent
  copies, so the recipe finds *other* images hard, with the same population AP.

A run is a list of COCO results (``image_id, category_id, bbox, score``), scored by
:func:`smallbox.evaluate.matching.match_images` + :func:`average_precision` (COCOeval's rules;
:func:`check_against_pycocotools` compares with pycocotools on simulated data).

``percentile_two_level`` is the method the calibrated test replaced (resampling 2-5 runs with
replacement, percentile interval); it lives here only to show the contrast.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import expit, ndtri

from smallbox.analysis.significance import image_weights
from smallbox.evaluate.matching import average_precision, match_images

SMALL = (0.0, 32.0 ** 2)  # COCO's "small" area range (closed, as COCOeval)
IMG = 640.0


@dataclass(frozen=True)
class Params:
    n_images: int = 300
    boxes_mean: float = 5.0       # boxes per image: 1 + Poisson(boxes_mean), at most 8
    fp_candidates: int = 4        # background patches per image that may become false positives
    q0: float = 2.5               # recipe quality (logit scale)
    size_slope: float = 1.0       # strength gain per doubling of box side (small = harder)
    a_z: float = 0.6              # weight of image difficulty
    a_b: float = 0.7              # weight of box difficulty
    tau: float = 0.05             # per-run, per-box strength noise (run x image interaction)
    loc_sigma: float = 0.06       # localisation error, fraction of the box side, at strength 0
    loc_run: float = 0.10         # share of the localisation error that changes from run to run
    fp_thr: float = 0.8           # a patch becomes a false positive when its latent exceeds this
    fp_z: float = 0.6             # harder images have more false positives
    fp_q: float = 0.6             # better runs have fewer false positives


@dataclass
class World:
    """One test set drawn from the image population (latents: column 0 the recipe's own, column 1
    an independent copy for other image profiles)."""

    params: Params
    gt: dict
    box_img: np.ndarray      # [G] image index of each box
    box_xywh: np.ndarray     # [G, 4] xywh_abs
    box_side: np.ndarray     # [G] sqrt(area)
    z: np.ndarray            # [N, 2] image difficulty
    b: np.ndarray            # [G, 2] box difficulty
    g: np.ndarray            # [G, 2] box luck
    loc: np.ndarray          # [G, 4] fixed localisation error direction
    score_noise: np.ndarray  # [G]
    fp_img: np.ndarray       # [F]
    fp_xywh: np.ndarray      # [F, 4] xywh_abs
    fp_v: np.ndarray         # [F, 2] false-positive latent
    fp_noise: np.ndarray     # [F]


def make_world(params: Params, rng: np.random.Generator) -> World:
    n = params.n_images
    counts = np.minimum(1 + rng.poisson(params.boxes_mean, n), 8)
    box_img = np.repeat(np.arange(n), counts)
    n_boxes = box_img.size
    side = np.exp(rng.uniform(np.log(6.0), np.log(160.0), n_boxes))
    aspect = np.exp(rng.normal(0, 0.3, n_boxes))
    w, h = side * aspect, side / aspect
    box_xywh = np.stack([rng.uniform(0, IMG - w), rng.uniform(0, IMG - h), w, h], 1)
    n_fp = n * params.fp_candidates
    fp_img = np.repeat(np.arange(n), params.fp_candidates)
    fs = np.exp(rng.uniform(np.log(6.0), np.log(120.0), n_fp))
    fw, fh = fs * np.exp(rng.normal(0, 0.3, n_fp)), fs * np.exp(rng.normal(0, 0.3, n_fp))
    fp_xywh = np.stack([rng.uniform(0, IMG - fw), rng.uniform(0, IMG - fh), fw, fh], 1)
    images = [{"id": i + 1, "width": int(IMG), "height": int(IMG), "file_name": f"{i + 1}.png"} for i in range(n)]
    anns = [{"id": k + 1, "image_id": int(box_img[k]) + 1, "category_id": 1, "bbox": box_xywh[k].tolist(),
             "area": float(box_xywh[k, 2] * box_xywh[k, 3]), "iscrowd": 0} for k in range(n_boxes)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "defect"}]}
    return World(params, gt, box_img, box_xywh, side, rng.normal(size=(n, 2)), rng.normal(size=(n_boxes, 2)),
                 rng.normal(size=(n_boxes, 2)), rng.normal(size=(n_boxes, 4)), rng.normal(size=n_boxes), fp_img,
                 fp_xywh, rng.normal(size=(n_fp, 2)), rng.normal(size=n_fp))


def _mix(latent: np.ndarray, rho: float) -> np.ndarray:
    return latent[:, 0] if rho >= 1 else rho * latent[:, 0] + math.sqrt(1 - rho ** 2) * latent[:, 1]


def make_run(world: World, quality: float, rng: np.random.Generator, rho: float = 1.0) -> list[dict]:
    """COCO results of one run: ``quality`` = the recipe's quality + this run's effect (logit
    scale); ``rng`` draws the run's own per-box noise; ``rho`` the recipe's image profile."""
    p = world.params
    z = _mix(world.z, rho)
    strength = (quality + p.size_slope * np.log2(world.box_side / 32.0) - p.a_z * z[world.box_img]
                - p.a_b * _mix(world.b, rho) + p.tau * rng.normal(size=world.box_side.size))
    found = _mix(world.g, rho) < ndtri(expit(strength))
    err = math.sqrt(1 - p.loc_run ** 2) * world.loc + p.loc_run * rng.normal(size=world.loc.shape)
    scale = p.loc_sigma * np.exp(-0.35 * strength)[:, None] * world.box_side[:, None]
    xywh = world.box_xywh.copy()
    xywh[:, :2] += scale * err[:, :2]
    xywh[:, 2:] *= np.exp(np.clip(scale * err[:, 2:] / world.box_side[:, None], -1.5, 1.5))
    score = expit(0.8 * strength + 0.4 * world.score_noise + 0.1 * rng.normal(size=strength.size))
    v = (_mix(world.fp_v, rho) + p.fp_z * z[world.fp_img] - p.fp_q * (quality - p.q0)
         + p.tau * rng.normal(size=world.fp_img.size))
    fp = v > p.fp_thr
    fp_score = expit(0.9 * (v - p.fp_thr) - 0.8 + 0.4 * world.fp_noise)
    img = np.concatenate([world.box_img[found], world.fp_img[fp]]) + 1
    boxes = np.concatenate([xywh[found], world.fp_xywh[fp]])
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
    scores = np.concatenate([score[found], fp_score[fp]])
    return [{"image_id": int(i), "category_id": 1, "bbox": bb, "score": float(s)}
            for i, bb, s in zip(img.tolist(), boxes.tolist(), scores.tolist())]


def run_ap(world: World, preds: list[dict], weights: np.ndarray | None = None, area=SMALL) -> tuple[float, np.ndarray]:
    """COCO AP (IoU .50:.95) in ``area`` of one run on the full test set, and ``[B]`` on each row
    of image ``weights [B, N]`` (NaN where a resample has no box in the range)."""
    matches = match_images(world.gt, preds, [area])[0]
    full = float(average_precision(matches)[0])
    if weights is None:
        return full, np.zeros(0)
    res = np.concatenate([average_precision(matches, weights[s:s + 50]) for s in range(0, len(weights), 50)])
    return full, np.where(res < 0, np.nan, res)


def check_against_pycocotools(seed: int = 0, n_runs: int = 2) -> list[tuple[float, float]]:
    """``(ours, pycocotools)`` AP_small of simulated runs."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(seed)
    world = make_world(Params(), rng)
    out = []
    for _ in range(n_runs):
        preds = make_run(world, Params().q0 + rng.normal(0, 0.3), rng)
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = world.gt
            coco.createIndex()
            ev = COCOeval(coco, coco.loadRes(preds), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out.append((run_ap(world, preds)[0], float(ev.stats[3])))
    return out


# --- one comparison ---------------------------------------------------------------------------

@dataclass
class Side:
    """Runs of one recipe in a comparison: quality shift ``dq`` (logit), image profile ``rho``."""

    name: str
    n_runs: int
    dq: float = 0.0
    rho: float = 1.0


def simulate_comparison(seed, sigma_run: float, sides: list[Side], n_resamples: int, params: Params = Params()) -> dict:
    """A new test set, one set of paired image resamples, and each side's runs: ``{name: (full
    [n_runs], resampled [n_resamples, n_runs])}`` of AP_small. ``seed`` (an int or a list of ints)
    fixes everything."""
    rng = np.random.default_rng(seed)
    world = make_world(params, rng)
    weights = image_weights(rng, n_resamples, params.n_images)
    out = {}
    for side in sides:
        runs = [run_ap(world, make_run(world, params.q0 + side.dq + sigma_run * rng.normal(), rng, side.rho), weights)
                for _ in range(side.n_runs)]
        out[side.name] = (np.array([f for f, _ in runs]), np.stack([r for _, r in runs], 1))
    return out


def percentile_two_level(a_res, b_res, rng: np.random.Generator, level: float = 0.95) -> tuple[float, float]:
    """The replaced method: per resample, runs drawn with replacement on each side, mean(B) -
    mean(A) on the paired image resample; percentile interval."""
    def resample_runs(values):
        n, k = values.shape
        return np.take_along_axis(values, rng.integers(0, k, size=(n, k)), axis=1).mean(axis=1)

    diffs = resample_runs(np.asarray(b_res)) - resample_runs(np.asarray(a_res))
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2 * 100
    return float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


# --- noise levels -----------------------------------------------------------------------------

GH_X, GH_W = np.polynomial.hermite_e.hermegauss(40)  # E over u ~ N(0, 1)
GH_W = GH_W / GH_W.sum()


def pilot(n_worlds: int = 4, runs: int = 6, n_resamples: int = 150, seed: int = 12345, params: Params = Params()) -> dict:
    """How AP_small responds to a run's quality (``ap`` at ``q``), the spread of runs of one
    quality on fixed images (``floor_sd``: run x image noise alone) and the image-resample spread
    of one run (``img_sd``)."""
    rng = np.random.default_rng(seed)
    qs = params.q0 + np.linspace(-3.0, 4.0, 15)
    curve, floor_var, img_sd = [], [], []
    for _ in range(n_worlds):
        world = make_world(params, rng)
        weights = image_weights(rng, n_resamples, params.n_images)
        aps = []
        for _ in range(runs):
            full, res = run_ap(world, make_run(world, params.q0, rng), weights)
            aps.append(full)
            img_sd.append(np.nanstd(res, ddof=1))
        floor_var.append(np.var(aps, ddof=1))
        seeds = rng.integers(0, 2 ** 31, 2)
        curve.append([np.mean([run_ap(world, make_run(world, q, np.random.default_rng(s)))[0] for s in seeds]) for q in qs])
    return {"q": qs, "ap": np.mean(curve, axis=0), "floor_sd": float(np.sqrt(np.mean(floor_var))),
            "img_sd": float(np.mean(img_sd)), "q0": params.q0}


def level_settings(pil: dict, ratio: float) -> dict:
    """``sigma_run`` giving the ratio (run sd on fixed images / image-resample sd of one run) and
    the quality shift ``dq`` giving a true difference of 2 x the run sd, through the AP(q) curve
    averaged over ``u ~ N(0, sigma_run)``."""
    q0, floor, img = pil["q0"], pil["floor_sd"], pil["img_sd"]
    ap = lambda q: np.interp(q, pil["q"], pil["ap"])  # noqa: E731

    def run_sd(sig):
        vals = ap(q0 + sig * GH_X)
        return math.sqrt(floor ** 2 + (GH_W * (vals - (GH_W * vals).sum()) ** 2).sum())

    target = ratio * img
    sigma = 0.0 if target <= floor else optimize.brentq(lambda s: run_sd(s) - target, 1e-6, 10)
    sd = run_sd(sigma)
    mean_a = (GH_W * ap(q0 + sigma * GH_X)).sum()
    dq = optimize.brentq(lambda d: (GH_W * ap(q0 + d + sigma * GH_X)).sum() - mean_a - 2 * sd, 0, 5)
    return {"ratio": ratio, "sigma_run": sigma, "run_sd": sd, "delta": 2 * sd, "dq": dq}
