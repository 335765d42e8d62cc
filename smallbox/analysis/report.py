"""One table over training runs (YOLO and torchvision alike), seeds grouped into mean ± std.

A run folder holds ``results.csv`` (one row per epoch; metric columns ``coco/AP``,
``coco/AP50``, ``coco/AP_small`` ..., and ``X/AP_small`` ... per extra bucket set ``X``) and
``smallbox.json`` (``path, model, backbone, imgsz, epochs, seed, data, buckets, predictions``).
For a plain Ultralytics run, ``args.yaml`` fills what ``smallbox.json`` lacks and Ultralytics'
own ``metrics/mAP50(B)`` / ``metrics/mAP50-95(B)`` stand in for COCO's numbers (marked).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets
from ..errors import SmallboxError
from ..runfolder import MISSING, RESULTS_CSV, read_run_info

CONFIG_KEYS = ("path", "model", "backbone", "imgsz", "epochs", "data")
ULTRALYTICS_FALLBACK = {"coco/AP50": "metrics/mAP50(B)", "coco/AP": "metrics/mAP50-95(B)"}


@dataclass
class Run:
    """One training run folder: its settings and the metrics of its chosen epoch.

    Attributes:
        info: settings (``CONFIG_KEYS``, ``seed``, ``buckets``, ``predictions``).
        epoch: the epoch the metrics come from; ``metrics``: ``{column: value}`` of that row;
        fallback: columns filled from Ultralytics' own metrics.
    """

    folder: Path
    info: dict
    epoch: int
    metrics: dict[str, float]
    fallback: set[str] = field(default_factory=set)
    settings: dict[str, str] = field(default_factory=dict)
    name: str = ""  # how the report names it: the folder's name, with its parent's if ambiguous

    def __post_init__(self):
        self.name = self.name or self.folder.name

    @property
    def predictions(self) -> Path | None:
        p = self.info.get("predictions")
        path = self.folder / p if p else None
        return path if path is not None and path.is_file() else None

    def config(self) -> tuple:
        """Everything that defines the experiment: all but the seed and where things went."""
        return tuple(sorted(self.settings.items()))


@dataclass
class Group:
    """Runs that differ only by seed."""

    runs: list[Run]

    @property
    def info(self) -> dict:
        return self.runs[0].info

    @property
    def label(self) -> str:
        return ", ".join(r.name for r in self.runs)

    def values(self, column: str) -> list[float]:
        """The column's value in each run, leaving out -1 (no ground truth in that range, as
        pycocotools writes it)."""
        return [r.metrics[column] for r in self.runs if _is_number(r.metrics.get(column)) and r.metrics[column] >= 0]

    def mean_std(self, column: str) -> tuple[float, float, int]:
        v = self.values(column)
        if not v:
            return math.nan, math.nan, 0
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else math.nan), len(v)


def _is_number(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def read_results_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a ``results.csv``, names and values stripped (Ultralytics pads them), numbers as
    floats (anything else NaN)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SmallboxError(f"{path}: no such file (not a training run folder?)") from None
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({k.strip(): _to_float(v) for k, v in row.items() if k is not None})
    if not rows:
        raise SmallboxError(f"{path}: no epochs recorded")
    return rows


def _to_float(v) -> float:
    try:
        return float(str(v).strip())
    except ValueError:
        return math.nan


def load_run(folder, metric: str = "coco/AP", epoch: str = "best") -> Run:
    """A run with the metrics of its best epoch by ``metric`` (ties: the earliest) or, with
    ``epoch="last"``, of its last epoch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SmallboxError(f"{folder}: no such run folder")
    info = read_run_info(folder)
    rows = read_results_csv(folder / RESULTS_CSV)
    fallback = _fill_fallback(rows)
    if metric not in rows[0]:
        known = ", ".join(k for k in rows[0] if "/" in k)
        raise SmallboxError(f"{folder / 'results.csv'}: no column {metric!r} (has: {known})")
    if epoch == "last":
        index = len(rows) - 1
    else:
        scores = [r[metric] if _is_number(r[metric]) else -math.inf for r in rows]
        index = max(range(len(rows)), key=lambda i: (scores[i], -i))
    row = rows[index]
    number = int(row["epoch"]) if _is_number(row.get("epoch")) else index + 1
    return Run(folder, info, number, row, fallback, read_settings(folder, info))


# Settings that do not change the experiment: where and how a run was saved, and the seed.
VOLATILE = {"seed", "name", "project", "save_dir", "exist_ok", "resume", "device", "workers", "plots", "verbose",
            "save", "save_period", "cache", "predictions", "best", "out", "output", "mode"}


def read_settings(folder: Path, info: dict) -> dict[str, str]:
    """``{dotted key: value as text}`` from ``smallbox.json``, Ultralytics' ``args.yaml`` and the
    torchvision path's ``recipe.yaml``, less ``VOLATILE`` keys."""
    flat = {}
    for name in ("args.yaml", "recipe.yaml"):
        path = folder / name
        if path.is_file():
            try:
                flat.update(_flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
            except yaml.YAMLError as e:
                raise SmallboxError(f"{path}: not valid yaml ({e})") from None
    flat.update(_flatten(info))
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in VOLATILE}


def _flatten(d, prefix: str = "") -> dict[str, str]:
    if not isinstance(d, dict):
        return {prefix: json.dumps(d, sort_keys=True) if isinstance(d, (list, tuple)) else str(d)}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def differing_settings(groups: list["Group"], shown=CONFIG_KEYS) -> dict[int, list[str]]:
    """``{group index: keys}``: settings every group of the same path has but with different
    values, other than the table's own columns (YOLO and torchvision settings do not compare)."""
    out = {}
    for path in {g.info.get("path") for g in groups}:
        members = [i for i, g in enumerate(groups) if g.info.get("path") == path]
        common = set.intersection(*(set(groups[i].runs[0].settings) for i in members)) - set(shown)
        differ = sorted(k for k in common if len({groups[i].runs[0].settings[k] for i in members}) > 1)
        out.update({i: differ for i in members})
    return out


def _fill_fallback(rows: list[dict]) -> set[str]:
    filled = set()
    for column, theirs in ULTRALYTICS_FALLBACK.items():
        if column not in rows[0] and theirs in rows[0]:
            for r in rows:
                r[column] = r[theirs]
            filled.add(column)
    return filled


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs with the same settings except the seed, in order of first appearance."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        groups.setdefault(r.config(), Group([])).runs.append(r)
    return list(groups.values())


def metric_columns(runs: list[Run]) -> list[str]:
    """``coco/AP50, coco/AP, coco/AP_small..large``, then each extra bucket set's."""
    columns = ["coco/AP50", "coco/AP"] + [f"coco/AP_{b}" for b in BUCKET_NAMES]
    extra = []
    for r in runs:
        for k in r.metrics:
            prefix, _, name = k.partition("/")
            if prefix not in ("coco", "metrics", "train", "val", "lr") and name in {f"AP_{b}" for b in BUCKET_NAMES} and prefix not in extra:
                extra.append(prefix)
    return columns + [f"{x}/AP_{b}" for x in extra for b in BUCKET_NAMES]


def format_cell(group: Group, column: str) -> str:
    mean, std, n = group.mean_std(column)
    if n == 0:
        return MISSING
    mark = "†" if any(column in r.fallback for r in group.runs) else ""
    if n == 1:
        return f"{mean:.3f}{mark}"
    return f"{mean:.3f} ± {std:.3f} ({n}){mark}"


def _seeds(group: Group) -> str:
    return ", ".join(str(r.info.get("seed", MISSING)) for r in group.runs)


MAX_SETTINGS = 6


def table_rows(groups: list[Group], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows; a *settings* column lists what else sets the groups apart (e.g. a
    recipe's ``mosaic`` or ``lr0``), when anything does."""
    differ = differing_settings(groups)
    any_differ = any(differ.values())
    header = ["runs", "path", "model", "backbone", "imgsz", "epochs"] + (["settings"] if any_differ else []) \
        + ["seeds", "epoch"] + [_short(c) for c in columns]
    rows = []
    for i, g in enumerate(groups):
        keys = differ[i]
        settings = [f"{k}={g.runs[0].settings[k]}" for k in keys[:MAX_SETTINGS]]
        if len(keys) > MAX_SETTINGS:
            settings.append(f"+{len(keys) - MAX_SETTINGS} more")
        rows.append([g.label] + [_display(g.info, k) for k in ("path", "model", "backbone", "imgsz", "epochs")]
                    + ([", ".join(settings) or MISSING] if any_differ else [])
                    + [_seeds(g), ", ".join(str(r.epoch) for r in g.runs)] + [format_cell(g, c) for c in columns])
    return header, rows


def _display(info: dict, key: str) -> str:
    value = str(info.get(key, MISSING))
    # a model given as a file path reads better by its name
    return Path(value).stem if key == "model" and ("/" in value or "\\" in value) else value


def _short(column: str) -> str:
    prefix, _, name = column.partition("/")
    if prefix == "coco":
        return "mAP50" if name == "AP50" else name
    return f"{name} ({prefix})"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(groups: list[Group], columns: list[str]) -> str:
    """One row per group: settings, then per metric its mean, std (empty with one run) and n."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["runs", "path", "model", "backbone", "imgsz", "epochs", "seeds", "epochs_used"]
               + [f"{c}{s}" for c in columns for s in ("", " std", " n")])
    for g in groups:
        cells = []
        for c in columns:
            mean, std, n = g.mean_std(c)
            cells += ["" if n == 0 else f"{mean:.10g}", "" if n < 2 else f"{std:.10g}", n]
        w.writerow([g.label] + [g.info.get(k, "") for k in ("path", "model", "backbone", "imgsz", "epochs")]
                   + [_seeds(g), " ".join(str(r.epoch) for r in g.runs)] + cells)
    return out.getvalue()


def significance_metric(column: str, group: Group, gt_areas) -> tuple[str, SizeBuckets] | None:
    """``coco/AP_small`` -> ``("AP_small", COCO buckets)``; ``fit/AP_small`` -> the run's own
    ``fit`` thresholds (from ``smallbox.json``, else fitted on ``gt_areas``); None for a column
    the bootstrap does not compute."""
    from ..evaluate.matching import METRICS

    prefix, _, name = column.partition("/")
    if name not in METRICS:
        return None
    if prefix == "coco":
        return name, SizeBuckets.coco()
    for d in group.info.get("buckets") or []:
        if d.get("name") == prefix:
            return name, SizeBuckets.from_dict(d)
    return (name, SizeBuckets.fit(gt_areas)) if prefix == "fit" else None


def find_gt(group: Group) -> Path | None:
    """The val ground truth of a group's runs: ``smallbox.json``'s ``val`` or ``data`` (a COCO
    json, or a converted dataset's data.yaml, whose manifest names its val json)."""
    from ..datasets.manifest import load_manifest

    for r in group.runs:
        data = r.info.get("val") or r.info.get("data")
        if not data:
            continue
        path = Path(data) if Path(data).is_absolute() or not (r.folder / data).exists() else r.folder / data
        if path.suffix in (".json", ".gz") and path.is_file():
            return path
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                coco = load_manifest(path).coco
            except SmallboxError:
                continue
            if "val" in coco and Path(coco["val"]).is_file():
                return Path(coco["val"])
    return None


class _GroundTruths:
    """Each group's val ground truth (``--gt`` for all when given), each file loaded once."""

    def __init__(self, override=None):
        self.override = Path(override) if override else None
        self.loaded = {}

    def path(self, group: Group) -> Path | None:
        return self.override or find_gt(group)

    def load(self, path: Path):
        from ..datasets.coco import load_coco

        key = path.resolve()
        if key not in self.loaded:
            self.loaded[key] = load_coco(path, check_files=False)
        return self.loaded[key]


@dataclass
class Comparison:
    """A significance test of group ``b`` against the baseline group ``a`` (or why none ran)."""

    a: Group
    b: Group
    result: object = None  # significance.BootstrapResult
    skipped: str = ""


def compare_groups(groups: list[Group], column: str, gts: _GroundTruths, n: int = 1000, seed: int = 0) -> list[Comparison]:
    """Each group against the first, by the two-level bootstrap, where both have predictions
    on the same val ground truth."""
    from .significance import bootstrap_difference

    comparisons = [Comparison(groups[0], g) for g in groups[1:]]
    for c in comparisons:
        path_a, path_b = gts.path(c.a), gts.path(c.b)
        missing = [r.name for r in c.a.runs + c.b.runs if r.predictions is None]
        if path_a is None or path_b is None:
            c.skipped = "no val ground truth found (pass --gt)"
        elif path_a.resolve() != path_b.resolve():
            c.skipped = f"different val sets ({path_a} vs {path_b})"
        elif missing:
            c.skipped = f"no predictions file in {', '.join(missing)}"
        else:
            gt = gts.load(path_a)
            spec = significance_metric(column, c.a, gt.areas())
            if spec is None:
                c.skipped = f"{column} is not a COCO AP the bootstrap computes"
                continue
            metric, buckets = spec
            c.result = bootstrap_difference(gt, [r.predictions for r in c.a.runs], [r.predictions for r in c.b.runs],
                                            metric=metric, buckets=buckets, n=n, seed=seed)
    return comparisons


def significance_markdown(comparisons: list[Comparison], column: str) -> str:
    header = ["A (baseline)", "B", f"B − A ({column})", "95% interval", "verdict"]
    rows = []
    for c in comparisons:
        if c.result is None:
            rows.append([c.a.label, c.b.label, MISSING, MISSING, f"not tested: {c.skipped}"])
            continue
        r = c.result
        scope = "" if r.runs_resampled else " (images only)"
        rows.append([c.a.label, c.b.label, f"{r.difference:+.4f}", f"[{r.interval[0]:+.4f}, {r.interval[1]:+.4f}]{scope}", r.verdict])
    note = ("Two-level paired bootstrap: each resample draws the test images with replacement (the same draw "
            "for A and B) and, per side, the runs (seeds) with replacement. With one run on a side the interval "
            "covers the test images only and ignores training noise, so it cannot establish a win. Computed from "
            "each run's predictions file (the final model on the val split), not from the table's epoch.")
    return markdown_table(header, rows) + "\n\n" + note


def pr_curves(groups: list[Group], gts: _GroundTruths) -> dict:
    """``{run name: {(set, bucket): precision [101]}}`` for every run with predictions and a
    known val ground truth."""
    from .plots import pr_curves_by_size
    from ..predictions import load_predictions

    curves = {}
    for g in groups:
        path = gts.path(g)
        if path is None:
            continue
        gt = gts.load(path)
        ids, cats = [im["id"] for im in gt.images], gt.category_ids
        sets = [SizeBuckets.coco()] + [SizeBuckets.from_dict(d) for d in g.info.get("buckets") or [] if d.get("name") != "coco"]
        for r in g.runs:
            if r.predictions is not None:
                curves[r.name] = pr_curves_by_size(gt, load_predictions(r.predictions, ids, cats), sets)
    return curves


def build_report(run_dirs, out_md, out_csv=None, metric: str = "coco/AP", epoch: str = "best", gt=None,
                 n: int = 1000, seed: int = 0, significance: bool = True) -> dict:
    """Write the markdown report (and CSV, and PNG plots beside the markdown).

    Returns ``{"markdown": text, "csv": text, "groups": [Group], "comparisons": [...], "files": [paths]}``.
    """
    from .plots import plot_ap_by_size, plot_pr_curves
    from ..fileio import write_text_atomic

    runs = [load_run(d, metric, epoch) for d in run_dirs]
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.folder.name) > 1:
            r.name = f"{r.folder.parent.name}/{r.folder.name}"
    groups = group_runs(runs)
    columns = metric_columns(runs)
    header, rows = table_rows(groups, columns)
    gts = _GroundTruths(gt)
    out_md = Path(out_md)
    stem = out_md.with_suffix("")
    chosen = "last epoch" if epoch == "last" else f"best epoch by `{metric}`"
    parts = ["# smallbox report", "",
             f"Metrics of each run's {chosen} (column *epoch*). Runs that differ only by seed are grouped: "
             "mean ± std (n runs), std over seeds.", "", markdown_table(header, rows)]
    if any(r.fallback for r in runs):
        parts += ["", "† Ultralytics' own mAP (the run's results.csv has no COCO columns): not COCO's evaluator."]
    comparisons = []
    if significance and len(groups) > 1:
        comparisons = compare_groups(groups, metric, gts, n=n, seed=seed)
        parts += ["", f"## Is the difference real? ({metric}, {n} resamples, seed {seed})", "",
                  significance_markdown(comparisons, metric)]
    files = []
    bars = {f"{_display(g.info, 'model')}: {g.label}": {c: g.mean_std(c)[:2] for c in columns if "/AP_" in c} for g in groups}
    files.append(plot_ap_by_size(bars, f"{stem}_ap_by_size.png"))
    parts += ["", "## Plots", "", f"![AP by size bucket]({files[-1].name})"]
    curves = pr_curves(groups, gts)
    if curves:
        files.append(plot_pr_curves(curves, f"{stem}_pr_by_size.png"))
        parts += ["", f"![precision-recall by size bucket]({files[-1].name})"]
    markdown = "\n".join(parts) + "\n"
    csv_out = csv_text(groups, columns)
    files.append(write_text_atomic(markdown, out_md))
    if out_csv:
        files.append(write_text_atomic(csv_out, out_csv))
    return {"markdown": markdown, "csv": csv_out, "groups": groups, "comparisons": comparisons, "files": files}
