"""One table over training runs (YOLO and torchvision alike), seeds grouped into mean ± std, each
group tested against a baseline group with the calibrated test (:mod:`.significance`).

What each run is scored by: with ``--report-split`` (the honest way), the checkpoint the run chose
(best.pt, picked on its val split) predicted and scored on a split that neither trained nor picked
it (:mod:`.report_split`); without, the LAST epoch's row of results.csv, on the val split, which
picked nothing for it. Never the best row of results.csv: the epoch that scored highest on a split
is lifted on that split by the luck of the pick. Without a report split the runs are not tested
against each other (their only predictions file is best.pt's on the split that picked it).

A run folder (:mod:`smallbox.runfolder`) holds ``results.csv`` (one row per epoch; metric columns
``coco/AP``, ``coco/AP50``, ``coco/AP_small`` ..., and ``X/AP_small`` ... per extra bucket set
``X``) and ``smallbox.json`` (``path, model, backbone, imgsz, epochs, seed, data, val, buckets,
predictions, evaluation``). For a plain Ultralytics run, ``args.yaml`` fills what
``smallbox.json`` lacks and Ultralytics' own ``metrics/mAP50(B)`` / ``metrics/mAP50-95(B)`` stand
in for COCO's numbers (marked). Folders that are not training runs (an Ultralytics ``val`` or
``predict`` folder beside the runs) are skipped with a note. The report states each group's
evaluation settings and ground truth (:mod:`.groundtruth`: compared by content, not by path).
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
from ..runfolder import MISSING, RESULTS_CSV, RUN_INFO, ULTRALYTICS_ARGS, is_run_folder, read_run_info
from .groundtruth import GroundTruth, GroundTruths, run_ground_truth, shared_ground_truth
from .significance import SignificanceResult, compare_runs

CONFIG_KEYS = ("path", "model", "backbone", "imgsz", "epochs", "data")
# shown in the table's own columns, or (val: the ground truth) in the evaluation section
SHOWN_ELSEWHERE = ("path", "model", "backbone", "imgsz", "epochs", "val")
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

    report_predictions: Path | None = None  # the chosen checkpoint's predictions on the report split

    @property
    def predictions(self) -> Path | None:
        if self.report_predictions is not None:
            return self.report_predictions
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
    return {k: v for k, v in flat.items() if not {k.split(".", 1)[0], k.rsplit(".", 1)[-1]} & VOLATILE}


def _flatten(d, prefix: str = "") -> dict[str, str]:
    if not isinstance(d, dict):
        return {prefix: json.dumps(d, sort_keys=True) if isinstance(d, (list, tuple)) else str(d)}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def differing_settings(groups: list["Group"], shown=SHOWN_ELSEWHERE) -> dict[int, list[str]]:
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
    extra = []  # every other set's AP_<range> columns, in the order the runs hold them
    for r in runs:
        for k in r.metrics:
            prefix, _, name = k.partition("/")
            if prefix not in ("coco", "metrics", "train", "val", "lr") and name.startswith("AP_") and k not in extra:
                extra.append(k)
    return columns + extra


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
        settings = [f"{k}={_short_value(g.runs[0].settings[k])}" for k in keys[:MAX_SETTINGS]]
        if len(keys) > MAX_SETTINGS:
            settings.append(f"+{len(keys) - MAX_SETTINGS} more")
        rows.append([g.label] + [_display(g.info, k) for k in ("path", "model", "backbone", "imgsz", "epochs")]
                    + ([", ".join(settings) or MISSING] if any_differ else [])
                    + [_seeds(g), ", ".join(str(r.epoch) for r in g.runs)] + [format_cell(g, c) for c in columns])
    return header, rows


def input_size_notes(groups: list[Group]) -> list[str]:
    """A note when YOLO and torchvision groups ran at other input sizes: a difference between the
    paths would then also be one of input size (Faster R-CNN at 1024 against YOLO at 640)."""
    sizes = {}
    for g in groups:
        sizes.setdefault(str(g.info.get("path", MISSING)), set()).add(str(g.info.get("imgsz", MISSING)))
    if not {"yolo", "tv"} <= set(sizes) or sizes["yolo"] == sizes["tv"]:
        return []
    said = ", ".join(f"{path} at {'/'.join(sorted(sizes[path]))} px" for path in ("yolo", "tv"))
    return [f"the paths ran at other input sizes ({said}): a difference between a YOLO and a tv group is also one of "
            "input size; for a parity comparison train both at one size (imgsz=S; model.min_size=S model.max_size=S)"]


def _short_value(value: str) -> str:
    """A file path by its name (data=data-small.yaml), anything else as it is."""
    return Path(value).name if "/" in value and " " not in value else value


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


def select_run_folders(paths) -> tuple[list[Path], list[str]]:
    """The training run folders among ``paths`` (e.g. ``runs/yolo/*``), and a note for each
    other path: an Ultralytics ``val`` or ``predict`` folder, a file, a run without results."""
    folders, notes = [], []
    for p in map(Path, paths):
        if not p.exists():
            raise SmallboxError(f"{p}: no such run folder")
        if is_run_folder(p):
            folders.append(p)
        elif p.is_dir() and not (p / RESULTS_CSV).is_file():
            notes.append(f"skipped {p}: not a training run (no {RESULTS_CSV}: a val or predict folder?)")
        elif p.is_dir():
            notes.append(f"skipped {p}: not a training run (neither {RUN_INFO} nor {ULTRALYTICS_ARGS} beside {RESULTS_CSV})")
        else:
            notes.append(f"skipped {p}: a file, not a run folder")
    if not folders:
        raise SmallboxError(f"no training run folder among {', '.join(map(str, paths))} (a run folder holds {RESULTS_CSV} "
                            f"and {RUN_INFO} or {ULTRALYTICS_ARGS})")
    return folders, notes


def significance_metric(column: str, group: Group, gt_areas) -> tuple[str, SizeBuckets] | None:
    """``coco/AP_small`` -> ``("AP_small", COCO buckets)``; ``fit/AP_small`` -> the run's own
    ``fit`` ranges (from ``smallbox.json``, else fitted on ``gt_areas``); ``aitod/AP_tiny`` the
    run's ``aitod`` set; None for a column the test does not compute."""
    from ..evaluate.matching import is_metric

    prefix, _, name = column.partition("/")
    if not is_metric(name):
        return None
    if prefix == "coco":
        return name, SizeBuckets.coco()
    for d in group.info.get("buckets") or []:
        if d.get("name") == prefix:
            return name, SizeBuckets.from_dict(d)
    return (name, SizeBuckets.fit(gt_areas)) if prefix == "fit" else None


def pick_baseline(groups: list[Group], name: str | None) -> int:
    """Index of the group holding the run ``name`` (its folder's name or path); the first without."""
    if not name:
        return 0
    for i, g in enumerate(groups):
        for r in g.runs:
            if name in (r.name, r.folder.name, str(r.folder)) or Path(name).absolute() == r.folder.absolute():
                return i
    raise SmallboxError(f"--baseline {name}: no such run (runs: {', '.join(r.name for g in groups for r in g.runs)})")


def evaluation_text(info: dict) -> str:
    """The settings behind a run's predictions (``smallbox.json`` ``evaluation``), one line."""
    ev = info.get("evaluation")
    if not ev:
        return "not recorded (an older or plain Ultralytics run)"
    return ", ".join(f"{k}={v}" for k, v in ev.items())


@dataclass
class Comparison:
    """The calibrated test of group ``b`` against the baseline ``a``, or why none ran.

    Attributes:
        scored_on: the ground truth both were scored on; ``note``: how it was chosen.
    """

    a: Group
    b: Group
    result: SignificanceResult | None = None
    skipped: str = ""
    scored_on: GroundTruth | None = None
    note: str = ""


def compare_groups(groups: list[Group], column: str, gt_of, baseline: int = 0, n: int = 1000, seed: int = 0,
                   level: float = 0.95, df: str = "auto") -> list[Comparison]:
    """Each group against the baseline by the calibrated test on ``column``, on a ground truth
    both can be scored on (``gt_of(group)`` -> :class:`GroundTruth` or None)."""
    comparisons = [Comparison(groups[baseline], g) for i, g in enumerate(groups) if i != baseline]
    for c in comparisons:
        gt_a, gt_b = gt_of(c.a), gt_of(c.b)
        missing = [r.name for r in c.a.runs + c.b.runs if r.predictions is None]
        if gt_a is None or gt_b is None:
            c.skipped = "no val ground truth found (pass --gt)"
            continue
        if missing:
            c.skipped = f"no predictions file in {', '.join(missing)}"
            continue
        c.scored_on, c.note = shared_ground_truth(gt_a, gt_b)
        if c.scored_on is None:
            c.skipped = c.note
            continue
        spec = significance_metric(column, c.a, c.scored_on.dataset.areas())
        if spec is None:
            c.skipped = f"{column} is not a COCO AP the test computes"
            continue
        try:
            c.result = compare_runs(c.scored_on.dataset, [r.predictions for r in c.a.runs],
                                    [r.predictions for r in c.b.runs], metric=spec[0], buckets=spec[1], n=n,
                                    seed=seed, level=level, df=df, progress=False)
        except SmallboxError as e:
            c.skipped = str(e)
    return comparisons


def significance_markdown(comparisons: list[Comparison], column: str, level: float) -> str:
    pct = f"{level * 100:g}%"
    header = ["A (baseline)", "B", f"B − A ({column})", f"{pct} interval", "p", "verdict"]
    rows, notes = [], []
    for c in comparisons:
        if c.result is None:
            rows.append([c.a.label, c.b.label, MISSING, MISSING, MISSING, f"not tested: {c.skipped}"])
            continue
        r = c.result
        extra = []
        if c.note:
            notes.append(f"{c.b.label}: {c.note}.")
            extra.append(f"on {c.scored_on.path.name}")
        if evaluation_text(c.a.info) != evaluation_text(c.b.info):
            extra.append("evaluated with different settings")
        scope = "" if r.runs_counted else " (test images only)"
        p = MISSING if r.p_value is None else f"{r.p_value:.3g}"
        rows.append([c.a.label, c.b.label, f"{r.difference:+.4f}", f"[{r.interval[0]:+.4f}, {r.interval[1]:+.4f}]{scope}",
                     p, r.verdict + (f" ({'; '.join(extra)})" if extra else "")])
    methods = sorted({c.result.method for c in comparisons if c.result is not None and c.result.runs_counted})
    text = [markdown_table(header, rows), "",
            "Method: " + ("; ".join(methods) or "none could run (2+ runs per side are needed)") + ". The interval is "
            "D ± t·se, D the difference of the groups' means over seeds; se counts the seed spread of each side "
            "(s²/n) and the test images (paired image bootstrap, less the run x image part the seed spread already "
            "holds); df: Welch's over the run terms with equal run counts, else Hsu's min(n)-1, times the total over "
            "the run variance. \"B better\" only when the "
            "whole interval is above 0. With one run on a side the seed spread is unknown: the interval covers the "
            "test images only and the verdict is \"cannot tell\". Computed from each run's predictions file (the "
            "chosen checkpoint on the report split), the same predictions the table scores (docs/analysis.md)."]
    return "\n".join(text + ([""] + [f"- {note}" for note in notes] if notes else []))


def settings_markdown(groups: list[Group], gt_of) -> str:
    """Each group's evaluation settings and ground truth; what differs said plainly."""
    rows, settings, keys = [], set(), set()
    for g in groups:
        gt = gt_of(g)
        settings.add(evaluation_text(g.info))
        keys.add(gt.key if gt else None)
        rows.append([g.label, str(g.info.get("path", MISSING)), gt.describe() if gt else "not found",
                     evaluation_text(g.info)])
    parts = [markdown_table(["runs", "path", "scored against (val ground truth)", "evaluation settings"], rows)]
    if len(settings) > 1:
        parts.append("\n**The groups were evaluated with different settings** (above): AP depends on them (a higher "
                     "confidence threshold or fewer detections per image lower it), so part of a difference between "
                     "such groups may come from the settings, not the models.")
    if len(keys) > 1:
        parts.append("\n**The groups were scored against different ground truths** (#: content hash of images, boxes "
                     "and categories): their numbers in the table do not compare. The test below re-scores a pair on a "
                     "ground truth both can be scored on, or says why it cannot.")
    return "\n".join(parts)


def pr_curves(groups: list[Group], gt_of) -> dict:
    """``{run name: {(set, bucket): precision [101]}}`` for every run with predictions and a
    known val ground truth."""
    from .plots import pr_curves_by_size
    from ..predictions import load_predictions

    curves = {}
    for g in groups:
        gt = gt_of(g)
        if gt is None:
            continue
        ids, cats = [im["id"] for im in gt.dataset.images], gt.dataset.category_ids
        sets = [SizeBuckets.coco()] + [SizeBuckets.from_dict(d) for d in g.info.get("buckets") or [] if d.get("name") != "coco"]
        for r in g.runs:
            if r.predictions is not None:
                curves[r.name] = pr_curves_by_size(gt.dataset, load_predictions(r.predictions, ids, cats), sets)
    return curves


def build_report(run_dirs, out_md, out_csv=None, metric: str = "coco/AP", epoch: str = "last", gt=None,
                 n: int = 1000, seed: int = 0, significance: bool = True, baseline: str | None = None,
                 level: float = 0.95, df: str = "auto", report_split=None, images=None) -> dict:
    """Write the markdown report (and CSV, and PNG plots beside the markdown).

    Args:
        report_split, images: a COCO json (and its image folder) that neither trained nor picked
            any run's checkpoint: each run's best.pt is predicted and scored on it. Without it,
            each run's last epoch row (``epoch="last"``), and no test.

    Returns ``{"markdown", "csv", "groups", "comparisons", "files", "notes"}``; ``notes`` name the
    paths that were not training runs.
    """
    from .plots import plot_ap_by_size, plot_pr_curves
    from ..fileio import write_text_atomic

    if epoch != "last":
        raise SmallboxError("a run's best epoch by its val split is lifted on that split: use --report-split, or the last epoch")
    if report_split and not images:
        raise SmallboxError("--report-split needs --images (the folder its file_name entries are relative to)")
    folders, notes = select_run_folders(run_dirs)
    runs = [load_run(d, metric, "last") for d in folders]
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.folder.name) > 1:
            r.name = f"{r.folder.parent.name}/{r.folder.name}"
    out_md = Path(out_md)
    stem = out_md.with_suffix("")
    gts = GroundTruths()
    override = gts.load(gt) if gt else None
    if report_split:
        from .report_split import score_runs_on_report

        _, picked = score_runs_on_report(runs, report_split, images, Path(f"{stem}_report_predictions"))
        override = gts.load(report_split)
        chosen = (f"checkpoint (best.pt, picked on {', '.join(sorted(set(picked.values())))}) predicted and scored on the "
                  f"report split {Path(report_split).name}, which neither trained nor picked any of them")
    else:
        chosen = ("last epoch (results.csv, on the val split, which picked nothing for it; give --report-split to score "
                  "each run's best.pt on images that neither trained nor picked it)")
    groups = group_runs(runs)
    notes += input_size_notes(groups)
    base = pick_baseline(groups, baseline)
    groups.insert(0, groups.pop(base))
    columns = metric_columns(runs)
    header, rows = table_rows(groups, columns)
    found = {}

    def gt_of(group: Group) -> GroundTruth | None:
        if override is not None:
            return override
        if id(group) not in found:
            paths = [p for p in (run_ground_truth(r.folder, r.info) for r in group.runs) if p is not None]
            found[id(group)] = gts.load(paths[0]) if paths else None
        return found[id(group)]

    parts = ["# smallbox report", "",
             f"Metrics of each run's {chosen} (column *epoch*: the epoch that checkpoint holds). Runs that differ only by "
             "seed are grouped: mean ± std (n runs), std over seeds. The first row is the baseline.", "",
             markdown_table(header, rows)]
    if any(r.fallback for r in runs):
        parts += ["", "† Ultralytics' own mAP (the run's results.csv has no COCO columns): not COCO's evaluator."]
    if notes:
        parts += [""] + [f"- {note}" for note in notes]
    parts += ["", "## Evaluation settings and ground truth", "", settings_markdown(groups, gt_of)]
    comparisons = []
    if significance and len(groups) > 1 and report_split:
        comparisons = compare_groups(groups, metric, gt_of, 0, n=n, seed=seed, level=level, df=df)
        parts += ["", f"## Is the difference real? ({metric}, each group against the baseline, {n} paired image "
                  f"resamples, seed {seed})", "", significance_markdown(comparisons, metric, level)]
    elif significance and len(groups) > 1:
        parts += ["", "## Is the difference real?", "", "Not tested: each run's only predictions are its best.pt's on the "
                  "split that picked it. Give `--report-split JSON --images DIR` (images that neither trained nor picked "
                  "any run) to test the groups on their chosen checkpoints."]
    files = []
    bars = {f"{_display(g.info, 'model')}: {g.label}": {c: g.mean_std(c)[:2] for c in columns if "/AP_" in c} for g in groups}
    files.append(plot_ap_by_size(bars, f"{stem}_ap_by_size.png"))
    parts += ["", "## Plots", "", f"![AP by size bucket]({files[-1].name})"]
    curves = pr_curves(groups, gt_of) if report_split else {}
    if curves:
        files.append(plot_pr_curves(curves, f"{stem}_pr_by_size.png"))
        parts += ["", f"![precision-recall by size bucket]({files[-1].name})"]
    markdown = "\n".join(parts) + "\n"
    csv_out = csv_text(groups, columns)
    files.append(write_text_atomic(markdown, out_md))
    if out_csv:
        files.append(write_text_atomic(csv_out, out_csv))
    return {"markdown": markdown, "csv": csv_out, "groups": groups, "comparisons": comparisons, "files": files,
            "notes": notes}
