"""``smallbox report --ledger DIR``: an experiment ledger (:mod:`smallbox.experiments.ledger`) as
one page, e.g. docs/results.md.

Per matrix and scale (entries trained at GPU scale and at CPU scale are never pooled): one row per
arm (mean ± std over its seeds of the ``predict`` + ``smallbox eval`` metrics each entry records,
and a row for a specialist's WBF fusion with its partner), the calibrated test of each row
against the matrix's baseline arm on the entries' predictions, the evaluation settings, an
AP-by-size plot (PNG beside the markdown) and a headline line: the best arm on AP_small against
the baseline, with its verdict.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets
from ..errors import SmallboxError
from ..experiments.ledger import FUSED, Entry, read_entries
from ..runfolder import MISSING
from .groundtruth import GroundTruths, shared_ground_truth
from .report import markdown_table
from .significance import B_BETTER, SignificanceResult, compare_runs

HEADLINE_METRIC = "coco/AP_small"


@dataclass
class ArmRow:
    """The seeds of one arm in one matrix at one scale (or the WBF fusion of a specialist arm)."""

    name: str
    entries: list[Entry]
    fused_with: str | None = None
    result: SignificanceResult | None = field(default=None, repr=False)
    skipped: str = ""
    note: str = ""
    p_holm: float | None = None  # the Holm-adjusted p over the section's tested arms
    verdict: str = ""            # the verdict at the family-wise level (follows p_holm)

    @property
    def label(self) -> str:
        return f"{self.name} + WBF with {self.fused_with}" if self.fused_with else self.name

    def metrics(self, entry: Entry) -> dict:
        return entry.data["fused"] if self.fused_with else entry.data["metrics"]

    def predictions(self) -> list[Path]:
        return [e.folder / FUSED if self.fused_with else e.predictions for e in self.entries]

    def values(self, column: str) -> list[float]:
        """``coco/AP_small``, ``AP``, ``fit/AP_small``: per seed, leaving out -1 (no ground truth)."""
        prefix, _, name = column.rpartition("/")
        out = []
        for e in self.entries:
            m = self.metrics(e)
            v = m.get(name) if prefix in ("", "coco") else (m.get("buckets", {}).get(prefix) or {}).get(name)
            if isinstance(v, (int, float)) and v >= 0:
                out.append(float(v))
        return out

    def mean_std(self, column: str) -> tuple[float, float, int]:
        v = self.values(column)
        if not v:
            return math.nan, math.nan, 0
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else math.nan), len(v)

    def cell(self, column: str) -> str:
        mean, std, n = self.mean_std(column)
        return MISSING if n == 0 else f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {std:.3f} ({n})"

    def train_cpu_minutes(self, lookup: dict) -> float | None:
        """Mean over seeds of the CPU minutes of training behind each prediction: the arm's own,
        those of the arm it starts from (init_from, a chain), and for a fusion its partner's."""
        per_seed = [_train_cpu(e, lookup) for e in self.entries]
        if self.fused_with:
            per_seed = [None if t is None or (p := lookup.get((self.fused_with, e.seed))) is None else t + _train_cpu(p, lookup)
                        for t, e in zip(per_seed, self.entries)]
        known = [t for t in per_seed if t is not None]
        return statistics.fmean(known) / 60 if known and len(known) == len(per_seed) else None

    def own_train_cpu_minutes(self) -> float:
        return statistics.fmean((e.data.get("cpu_seconds") or {}).get("train", 0.0) for e in self.entries) / 60

    def predict_ms(self, lookup: dict) -> float | None:
        """Mean predict ms/image (a fusion: both members' predictions, the fusion itself aside)."""
        values = []
        for e in self.entries:
            ms = e.data.get("predict_ms_per_image")
            if ms is not None and self.fused_with:
                partner = lookup.get((self.fused_with, e.seed))
                ms = None if partner is None or partner.data.get("predict_ms_per_image") is None \
                    else ms + partner.data["predict_ms_per_image"]
            values.append(ms)
        return statistics.fmean(values) if values and None not in values else None

    def evaluation(self) -> str:
        settings = self.entries[0].data.get("settings") or {}
        ev = dict(settings.get("evaluation") or {})
        inference = settings.get("inference") or {}
        if "slice" in inference:
            ev["slice"] = ", ".join(f"{k}={v}" for k, v in inference["slice"].items()) or "defaults"
        elif inference.get("imgsz") is not None:
            ev["imgsz"] = inference["imgsz"]
        if self.fused_with:
            fused = self.entries[0].data.get("fused") or {}
            ev["fused"] = fused.get("method", "wbf") + (f" gated {fused['gate']}" if fused.get("gate") else "")
        return ", ".join(f"{k}={v}" for k, v in ev.items()) or "not recorded"


def _train_cpu(entry: Entry, lookup: dict, depth: int = 0) -> float | None:
    """CPU seconds of training behind an entry's weights (its own, plus its init_from chain)."""
    own = (entry.data.get("cpu_seconds") or {}).get("train", 0.0)
    parent = (entry.data.get("settings") or {}).get("init_from")
    if not parent:
        return own
    source = lookup.get((parent, entry.seed))
    if source is None or depth > 20:
        return None
    before = _train_cpu(source, lookup, depth + 1)
    return None if before is None else own + before


@dataclass
class Section:
    """The entries of one matrix at one scale."""

    matrix: str
    scale: str
    rows: list[ArmRow]
    baseline: str
    baseline_source: str

    @property
    def entries(self) -> list[Entry]:
        return [e for r in self.rows if not r.fused_with for e in r.entries]

    @property
    def key(self) -> str:
        return f"{self.matrix}_{self.scale}"

    @property
    def lookup(self) -> dict:
        """``{(arm, seed): entry}`` of the section."""
        return {(e.arm, e.seed): e for e in self.entries}

    def tested_rows(self) -> list[ArmRow]:
        return [r for r in self.rows[1:] if r.result is not None]


def bucket_sets(section: Section) -> list[str]:
    """``coco`` and the other bucket sets the entries were scored with (``fit``)."""
    names = {n for e in section.entries for n in (e.data["metrics"].get("buckets") or {})}
    return ["coco"] + sorted(names - {"coco"})


def range_names(section: Section, bucket_set: str) -> list[str]:
    """The range names of a bucket set as the entries recorded them (COCO's three by default)."""
    for e in section.entries:
        recorded = (e.data["metrics"].get("buckets") or {}).get(bucket_set) or {}
        if recorded.get("names"):
            return list(recorded["names"])
    return list(BUCKET_NAMES)


def size_columns(section: Section) -> list[str]:
    """``coco/AP_small`` ... then every other set's ``<set>/AP_<range>``."""
    return [f"{s}/AP_{b}" for s in bucket_sets(section) for b in range_names(section, s)]


def sections_of(entries: list[Entry], baseline: str | None, matrix_file) -> list[Section]:
    """Entries grouped by (matrix, scale), arms in the matrix file's order, the baseline first."""
    out = []
    for matrix, scale in sorted({(e.data.get("matrix", MISSING), e.data.get("scale", MISSING)) for e in entries}):
        mine = [e for e in entries if (e.data.get("matrix", MISSING), e.data.get("scale", MISSING)) == (matrix, scale)]
        arms = sorted({e.arm for e in mine})
        base, source, order = _baseline(matrix, arms, mine, baseline, matrix_file)
        arms.sort(key=lambda a: (a != base, order.index(a) if a in order else len(order), a))
        rows = []
        for arm in arms:
            seeds = sorted((e for e in mine if e.arm == arm), key=lambda e: e.seed)
            rows.append(ArmRow(arm, seeds))
            fused = [e for e in seeds if e.data.get("fused") and (e.folder / FUSED).is_file()]
            if fused:
                rows.append(ArmRow(arm, fused, fused_with=fused[0].data["fused"].get("with", "?")))
        out.append(Section(matrix, scale, rows, base, source))
    return out


def _baseline(matrix: str, arms: list[str], entries: list[Entry], name, matrix_file) -> tuple[str, str, list[str]]:
    """The baseline arm, where that came from, and the arm order of the matrix file (if found)."""
    from ..experiments.matrix import load_matrix

    candidates = [Path(matrix_file)] if matrix_file else \
        [entries[0].folder.parents[2].parent / f"{matrix}.yaml", Path("experiments") / f"{matrix}.yaml"]
    found = next((p for p in candidates if p.is_file()), None)
    spec = load_matrix(found, check_files=False) if found else None
    if spec is not None and spec.name != matrix:
        if matrix_file:
            raise SmallboxError(f"--matrix {matrix_file}: it is matrix {spec.name!r}, the ledger's entries are {matrix!r}")
        spec = None
    order = list(spec.arms) if spec else []
    if name:
        source = "--baseline"
    elif spec:
        name, source = spec.baseline, f"baseline: of {os.path.normpath(found)}"
    elif "baseline" in arms:
        name, source = "baseline", "the arm named baseline (no matrix file found)"
    else:
        raise SmallboxError(f"ledger matrix {matrix!r}: which arm is the baseline? No matrix file found "
                            f"({', '.join(map(str, candidates))}): pass --baseline ARM or --matrix FILE")
    if name not in arms:
        raise SmallboxError(f"baseline {name!r} ({source}) has no entry in the ledger of {matrix!r} (arms: {', '.join(arms)})")
    return name, source, order


def test_rows(section: Section, column: str, gts: GroundTruths, n: int, seed: int, level: float, df: str) -> None:
    """The calibrated test of every row against the baseline arm, on their recorded ground truth."""
    base = section.rows[0]
    prefix, _, metric = column.rpartition("/")
    for row in section.rows[1:]:
        entries = base.entries + row.entries
        paths = {e.report.resolve() for e in entries if e.report}
        missing = [p for p in paths if not p.is_file()]
        if not paths or missing:
            row.skipped = f"ground truth not found: {', '.join(map(str, missing)) or 'no report split recorded'}"
            continue
        changed = next((m for e in entries if (m := e.report_mismatch())), None)
        if changed:
            row.skipped = changed
            continue
        loaded = [gts.load(p) for p in sorted(paths)]
        gt, note = loaded[0], ""
        for other in loaded[1:]:
            gt, note = shared_ground_truth(gt, other)
            if gt is None:
                break
        if gt is None:
            row.skipped = note
            continue
        buckets = _buckets(base, prefix)
        if buckets is None:
            row.skipped = f"{column}: the entries record no {prefix!r} size buckets"
            continue
        if row.fused_with:
            row.note = (f"the fusion uses the {row.fused_with} run of the same seed, so the two sides are not "
                        "independent; the test treats them as independent (conservative for a positive correlation)")
        try:
            row.result = compare_runs(gt.dataset, base.predictions(), row.predictions(), metric=metric, buckets=buckets,
                                      n=n, seed=seed, level=level, df=df, progress=False)
        except SmallboxError as e:
            row.skipped = str(e)
    correct_family(section)


def correct_family(section: Section) -> None:
    """Holm's correction over the section's tested arms (all against one baseline): each row's
    adjusted p and the verdict that follows it."""
    from .significance import corrected_verdict, holm

    rows = section.tested_rows()
    for row, p in zip(rows, holm([r.result.p_value if r.result.runs_counted else None for r in rows])):
        row.p_holm = p
        row.verdict = corrected_verdict(row.result, p)


def _buckets(row: ArmRow, prefix: str) -> SizeBuckets | None:
    if prefix in ("", "coco"):
        return SizeBuckets.coco()
    recorded = (row.entries[0].data["metrics"].get("buckets") or {}).get(prefix)
    if not recorded or "thresholds" not in recorded:
        return None
    ranges = recorded.get("ranges") or []
    return SizeBuckets(tuple(recorded["thresholds"]), prefix, tuple(recorded["names"]) if recorded.get("names") else None,
                       *((ranges[0][0], ranges[-1][1]) if ranges else ()))


def headline(section: Section, level: float, result_of) -> str:
    """The line a README can quote: the best arm on AP_small against the baseline, with its
    family-wise (Holm) verdict."""
    base, others = section.rows[0], [r for r in section.rows[1:] if r.mean_std(HEADLINE_METRIC)[2]]
    b_mean, b_std, b_n = base.mean_std(HEADLINE_METRIC)
    where = f"{section.matrix} ({section.scale} scale)"
    if not others:
        return f"**{where}:** only the baseline, {base.label}, is in the ledger: AP_small {_pm(b_mean, b_std, b_n)}."
    best = max(others, key=lambda r: r.mean_std(HEADLINE_METRIC)[0])
    mean, std, n = best.mean_std(HEADLINE_METRIC)
    base_name = "the baseline" if base.label == "baseline" else f"the baseline {base.label}"
    text = f"**{where}:** best AP_small: {best.label} {_pm(mean, std, n)} against {base_name} {_pm(b_mean, b_std, b_n)}"
    res, skipped, verdict, p_holm = result_of(best)
    if res is None:
        return text + f"; not tested ({skipped or 'no test'})."
    pct = f"{level * 100:g}%"
    said = "better" if verdict == B_BETTER else verdict
    corrected = f", Holm-corrected p {p_holm:.3g} over {len(section.tested_rows())} arms" if p_holm is not None else ""
    return (text + f": B − A = {res.difference:+.3f}, {pct} interval [{res.interval[0]:+.3f}, {res.interval[1]:+.3f}]"
            f" ({len(res.b_values)} vs {len(res.a_values)} seeds{corrected}): **{said}**.")


def _pm(mean: float, std: float, n: int) -> str:
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    return f"{mean:.3f} ({seeds})" if n < 2 else f"{mean:.3f} ± {std:.3f} ({seeds})"


def _minutes(value: float | None) -> str:
    return MISSING if value is None else f"{value:.{0 if value >= 10 else 1}f}"


def _cost_cell(row: ArmRow, lookup: dict) -> str:
    total, own = row.train_cpu_minutes(lookup), row.own_train_cpu_minutes()
    if total is None:
        return MISSING
    if row.fused_with or (total - own) > 0.05:
        return f"{_minutes(total)} ({_minutes(own)} own)"
    return _minutes(total)


def section_markdown(section: Section, column: str, level: float, plot_name: str, cost_plot: str,
                     headline_text: str) -> str:
    sets = bucket_sets(section)
    columns = ["AP", "AP50"] + size_columns(section)
    header = ["arm", "about", "seeds", "train CPU-min", "predict ms/img", *[c.replace("coco/", "") for c in columns]]
    lookup = section.lookup
    rows = []
    for r in section.rows:
        about = r.entries[0].data.get("about") or MISSING
        ms = r.predict_ms(lookup)
        rows.append([r.label + (" (baseline)" if r is section.rows[0] else ""),
                     f"fused with {r.fused_with} ({r.evaluation().rpartition('fused=')[2]})" if r.fused_with else about,
                     ", ".join(str(e.seed) for e in r.entries), _cost_cell(r, lookup),
                     MISSING if ms is None else f"{ms:.0f}", *[r.cell(c) for c in columns]])
    hardware = sorted({(e.data.get("hardware") or {}).get("gpu") or f"CPU ({(e.data.get('hardware') or {}).get('cpu_count', '?')} cores)"
                       for e in section.entries})
    commits = sorted({((e.data.get("git") or {}).get("commit") or "unknown")[:10] for e in section.entries})
    dirty = sum(bool((e.data.get("git") or {}).get("dirty")) for e in section.entries)
    settings = {r.label: r.evaluation() for r in section.rows}
    parts = [f"## {section.matrix} — {section.scale} scale", "", headline_text, "",
             f"Baseline: `{section.baseline}` ({section.baseline_source}). {len(section.entries)} "
             f"entr{'y' if len(section.entries) == 1 else 'ies'}; hardware: "
             f"{', '.join(hardware)}; code: {', '.join(commits)}" + (f" ({dirty} with uncommitted changes)" if dirty else "")
             + ". " + roles_text(section), "",
             "Metrics: `predict` + `smallbox eval` of each run's chosen checkpoint on the report split, mean ± std "
             "(n seeds). *train CPU-min*: CPU time (user + system, all cores) of the training behind the predictions, "
             "the arm it starts from included (its own share in brackets); *predict ms/img*: wall time per report "
             "image, model loading excluded (a fusion: both members).", "",
             markdown_table(header, rows), "", "Evaluation settings (predict): " + _settings_line(settings), ""]
    if len(section.rows) > 1:
        parts += [f"### Against the baseline ({column}, calibrated test, Holm-corrected over the arms)", "",
                  _tests_table(section, column, level), ""]
    parts += [f"![AP by size bucket, {section.matrix} {section.scale}]({plot_name})", "",
              f"![AP_small against training CPU minutes, {section.matrix} {section.scale}]({cost_plot})"]
    return "\n".join(parts)


def roles_text(section: Section) -> str:
    """Which split trained, which picked each checkpoint and which scored it, as the entries say."""
    def names(role):
        found = sorted({os.path.basename(str((e.roles.get(role) or {}).get("path", e.roles.get(role))))
                        for e in section.entries})
        return ", ".join(found) or MISSING
    trained = [e for e in section.entries if (e.data.get("settings") or {}).get("model") is not None]
    picks = sorted({e.selected_by for e in trained or section.entries})
    return (f"Data: trained on {names('train')}; each checkpoint picked on {names('select')} ({'; '.join(picks)}); "
            f"scored on the report split {names('report')}, which trained and picked nothing.")


def _settings_line(settings: dict[str, str]) -> str:
    distinct = sorted(set(settings.values()))
    if len(distinct) == 1:
        return f"{distinct[0]} (every arm)."
    common = set.intersection(*(set(v.split(", ")) for v in settings.values()))
    shared = ", ".join(p for p in next(iter(settings.values())).split(", ") if p in common)
    own = "; ".join(f"{k}: {', '.join(p for p in v.split(', ') if p not in common)}" for k, v in settings.items()
                    if set(v.split(", ")) - common)
    return f"{shared} for every arm; besides: {own}."


def _tests_table(section: Section, column: str, level: float) -> str:
    pct = f"{level * 100:g}%"
    header = ["arm", "seeds B vs A", f"B − A ({column})", f"{pct} interval", "p", "p (Holm)", "verdict (Holm)"]
    rows, notes, methods = [], [], set()
    for r in section.rows[1:]:
        if r.note:
            notes.append(f"{r.label}: {r.note}.")
        if r.result is None:
            rows.append([r.label, MISSING, MISSING, MISSING, MISSING, MISSING, f"not tested: {r.skipped}"])
            continue
        res = r.result
        if res.runs_counted:
            methods.add(res.method)
        scope = "" if res.runs_counted else " (test images only)"
        rows.append([r.label, f"{len(res.b_values)} vs {len(res.a_values)}", f"{res.difference:+.4f}",
                     f"[{res.interval[0]:+.4f}, {res.interval[1]:+.4f}]{scope}",
                     MISSING if res.p_value is None else f"{res.p_value:.3g}",
                     MISSING if r.p_holm is None else f"{r.p_holm:.3g}", r.verdict or res.verdict])
    method = "; ".join(sorted(methods)) or "none could run (2+ seeds per side are needed)"
    m = len([r for r in section.tested_rows() if r.p_holm is not None])
    text = [markdown_table(header, rows), "",
            f"Method: {method}. Family-wise: the {m} arms are tested against one baseline, so each p is adjusted by "
            f"Holm's step-down rule (the chance of any false \"better\" among them stays at most {100 - level * 100:g}%); "
            "the verdict follows the adjusted p. The uncorrected interval is shown for size. Seeds are not paired: "
            "each side's seeds are independent runs."]
    return "\n".join(text + ([""] + [f"- {note}" for note in notes] if notes else []))


def answer_markdown(section: Section, level: float, column: str) -> str:
    """The page's opening for one section, in plain words: which arms raise the metric, which
    lower it, which show no detectable difference (and how many seeds would settle it)."""
    from .significance import A_BETTER

    lookup, base = section.lookup, section.rows[0]
    rows = section.tested_rows()
    if not rows:
        return f"- {section.matrix} ({section.scale}): no arm could be tested against the baseline yet (2+ seeds a side)."
    m = len([r for r in rows if r.p_holm is not None])
    base_cost = base.train_cpu_minutes(lookup)
    better = [r for r in rows if r.verdict == B_BETTER]
    worse = [r for r in rows if r.verdict == A_BETTER]
    unclear = [r for r in rows if r not in better and r not in worse]
    name = column.replace("coco/", "")
    lines = [f"On {section.matrix} ({section.scale} scale; baseline {base.label}: {name} {_pm(*base.mean_std(column))}, "
             f"{_minutes(base_cost)} train CPU-min), {m} arms tested at a family-wise {level * 100:g}% level (Holm):", ""]

    def said(r: ArmRow) -> str:
        res = r.result
        cost = r.train_cpu_minutes(lookup)
        extra = "" if cost is None or base_cost is None else f"; {_minutes(cost)} train CPU-min ({cost / base_cost:.1f}x the baseline's)"
        ms, base_ms = r.predict_ms(lookup), base.predict_ms(lookup)
        if ms is not None and base_ms:
            extra += f", predict {ms:.0f} ms/img ({ms / base_ms:.1f}x)"
        return (f"**{r.label}** {res.difference:+.3f} [{res.interval[0]:+.3f}, {res.interval[1]:+.3f}], "
                f"Holm p {r.p_holm:.2g}{extra}" if r.p_holm is not None else f"**{r.label}** {res.difference:+.3f}")

    if better:
        lines.append("- **Raise " + name + ":** " + "; ".join(said(r) for r in better) + ".")
    else:
        lines.append(f"- **No arm raises {name} detectably at this scale.**")
    if worse:
        lines.append("- **Lower " + name + ":** " + "; ".join(said(r) for r in worse) + ".")
    if unclear:
        lines.append("- **No detectable difference:** " + "; ".join(said(r) + _plan_text(r, m, level) for r in unclear) + ".")
    return "\n".join(lines)


def _plan_text(row: ArmRow, family: int, level: float) -> str:
    """How many seeds a side would detect the observed difference (``smallbox significance
    --plan``), at the strictest Holm level of the family."""
    from .planning import plan_from_result

    res = row.result
    if res is None or not res.runs_counted or abs(res.difference) < 1e-9:
        return ""
    try:
        plan = plan_from_result(res, abs(res.difference), alpha=(1 - level) / max(family, 1))
    except SmallboxError:
        return ""
    point, upper = plan.point, plan.upper
    if point.n is None:
        return f" (a difference of {abs(res.difference):.3f} is out of reach: {point.reason})"
    safe = f", {upper.n} to be safe" if upper.n is not None and upper.n != point.n else \
        (", more than 200 to be safe" if upper.n is None else "")
    return f" (to detect {abs(res.difference):.3f}: about {point.n} seeds a side{safe})"


def csv_text(sections: list[Section]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    columns = ["AP", "AP50", "AP75", "AR_100"] + list(dict.fromkeys(c for s in sections for c in size_columns(s)))
    w.writerow(["matrix", "scale", "arm", "seeds"] + [f"{c}{s}" for c in columns for s in ("", " std", " n")])
    for s in sections:
        for r in s.rows:
            cells = []
            for c in columns:
                mean, std, n = r.mean_std(c)
                cells += ["" if n == 0 else f"{mean:.10g}", "" if n < 2 else f"{std:.10g}", n]
            w.writerow([s.matrix, s.scale, r.label, " ".join(str(e.seed) for e in r.entries)] + cells)
    return out.getvalue()


def build_ledger_report(ledger, out_md, out_csv=None, metric: str = HEADLINE_METRIC, baseline: str | None = None,
                        matrix=None, n: int = 1000, seed: int = 0, level: float = 0.95, df: str = "auto",
                        significance: bool = True) -> dict:
    """Write the results page of a ledger folder (a matrix's, or a parent of several).

    Returns ``{"markdown", "csv", "sections", "headlines", "files", "broken"}``.
    """
    from ..evaluate.matching import is_metric
    from ..fileio import write_text_atomic
    from .plots import plot_ap_by_size, plot_metric_vs_cost

    column = metric if "/" in metric else f"coco/{metric}"
    if not is_metric(column.rpartition("/")[2]):
        raise SmallboxError(f"--metric {metric}: choose AP, AP50, AP75 or a size range's AP_<range> (coco/AP_small, "
                            "fit/AP_small, aitod/AP_tiny ...)")
    broken: list = []
    entries = read_entries(ledger, broken)
    if not entries:
        raise SmallboxError(f"{ledger}: no whole ledger entries (entry.json) under it"
                            + (f" ({len(broken)} not whole, e.g. {broken[0][1]})" if broken else "")
                            + "; run `smallbox experiments run MATRIX.yaml`")
    sections = sections_of(entries, baseline, matrix)
    gts = GroundTruths()
    out_md = Path(out_md)
    stem = out_md.with_suffix("")
    files, headlines, bodies, answers = [], [], [], []
    for s in sections:
        if significance:
            test_rows(s, column, gts, n, seed, level, df)

        def result_of(row, s=s):
            if not significance:
                return None, "--no-significance", "", None
            if column != HEADLINE_METRIC:  # the headline is about AP_small whatever the tested metric
                copies = [ArmRow(r.name, r.entries, r.fused_with) for r in s.rows]
                twin = Section(s.matrix, s.scale, copies, s.baseline, s.baseline_source)
                test_rows(twin, HEADLINE_METRIC, gts, n, seed, level, df)
                row = copies[s.rows.index(row)]
            return row.result, row.skipped, row.verdict, row.p_holm

        line = headline(s, level, result_of)
        headlines.append(line)
        series = {r.label: {c: r.mean_std(c)[:2] for c in size_columns(s)} for r in s.rows}
        files.append(plot_ap_by_size(series, f"{stem}_{s.key}_ap_by_size.png",
                                     title=f"AP by size bucket, {s.matrix} ({s.scale})"))
        points = {r.label: (r.train_cpu_minutes(s.lookup), *r.mean_std(column)[:2], r.verdict) for r in s.rows}
        files.append(plot_metric_vs_cost(points, f"{stem}_{s.key}_cost.png", column.replace("coco/", ""),
                                         title=f"{column.replace('coco/', '')} against training cost, {s.matrix} ({s.scale})",
                                         baseline=s.rows[0].label))
        bodies += ["", section_markdown(s, column, level, files[-2].name, files[-1].name, line)]
        if significance:
            answers += ["", answer_markdown(s, level, column)]
    parts = ["# Results", "", f"Generated by `smallbox report --ledger {ledger}` from {len(entries)} ledger entries "
             "(each one finished run: settings, git commit, hardware, metrics, predictions); do not edit by hand."]
    if broken:
        parts += ["", f"Left out: {len(broken)} entr{'y' if len(broken) == 1 else 'ies'} that {'is' if len(broken) == 1 else 'are'} "
                      f"not whole ({'; '.join(why for _, why in broken[:3])}{'; ...' if len(broken) > 3 else ''})."]
    if answers:
        parts += ["", "## The answer"] + answers
    markdown = "\n".join(parts + bodies) + "\n"
    csv_out = csv_text(sections)
    files.append(write_text_atomic(markdown, out_md))
    if out_csv:
        files.append(write_text_atomic(csv_out, out_csv))
    return {"markdown": markdown, "csv": csv_out, "sections": sections, "headlines": headlines, "files": files,
            "broken": broken}
