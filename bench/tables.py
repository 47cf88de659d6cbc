"""Render the long metrics table (bench.metrics.evaluate) in the layout of DEAR's Table 1.

Columns: a group per generator set (suite order) holding the chosen metrics, then Avg (mean
over generator sets, present when any generator set is shown), then the in-the-wild sets.
Rows: one block per condition ("Original", "Post-processed", then any sweep label), and inside
each block the detectors grouped by family in the order CNN, CLIP, ViT, training-free (other
families after, as first seen); detectors keep their order of first appearance.

Highlighting, per column within a block: the best printed value in bold, the second best
distinct value underlined (ties share the mark). Higher is better for every metric but EER.
The asymmetry R-F is not highlighted: it is a signed diagnostic, and the value closest to 0
would crown a detector that is equally wrong on both classes. Values are compared as printed
(after rounding to `digits`, half away from zero), so two equal-looking numbers never get different marks. A column
with fewer than two numbers is not highlighted. NaN (a metric that does not apply, e.g.
accuracies of an uncalibrated detector) prints as "-" (an empty cell in CSV).
"""
from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from bench.api import FAMILIES, BenchError, did_you_mean
from bench.metrics import SMALL_SET, condition_order

HEADERS: dict[str, str] = {
    "auc": "AUC", "ap": "AP", "racc": "R.Acc", "facc": "F.Acc", "acc": "Acc",
    "eer": "EER", "tpr1": "TPR@1%", "tpr5": "TPR@5%", "asym": "R-F",
}
LOWER_IS_BETTER = frozenset({"eer"})
NOT_HIGHLIGHTED = frozenset({"asym"})
FORMATS: tuple[str, ...] = ("latex", "markdown", "csv", "html", "text")
ALIASES = {"md": "markdown", "tex": "latex", "txt": "text"}
_NEEDED = ("condition", "detector", "display_name", "family", "set", "set_display", "set_kind", "set_order")


class TableError(BenchError, ValueError):
    """A table cannot be rendered from the given metrics and options."""


@dataclass(frozen=True)
class _Group:
    set: str
    display: str
    metrics: tuple[str, ...]
    n_real: int = 0
    n_fake: int = 0
    kind: str = ""

    @property
    def small(self) -> bool:
        return self.kind != "avg" and min(self.n_real, self.n_fake) < SMALL_SET

    @property
    def heading(self) -> str:
        """The terminal summary's name of the group: "Avg", or the set with its real/fake counts."""
        return "Avg" if self.kind == "avg" else f"{self.display} {self.n_real}/{self.n_fake}{' †' if self.small else ''}"


@dataclass
class _Row:
    kind: str  # "block" | "family" | "detector"
    label: str
    block: str = ""
    family: str = ""
    detector: str = ""
    weights: str = ""
    values: list[float] = field(default_factory=list)  # rounded as printed; NaN = does not apply
    marks: list[str] = field(default_factory=list)  # "best" | "second" | ""
    intervals: list[tuple[float, float] | None] = field(default_factory=list)  # bootstrap CI of an AUC cell


def _fmt(x: float, digits: int) -> str:
    """Round half away from zero on the shortest decimal form (81.25 -> 81.3, as by hand),
    never printing "-0.0"."""
    if not math.isfinite(x):
        return str(x)
    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{q:f}"
    return text[1:] if text.startswith("-") and q == 0 else text


def _columns(df: pd.DataFrame, metrics: tuple[str, ...], sets: Sequence[str] | None) -> list[_Group]:
    cat = df.loc[df["set_kind"] != "real", ["set", "set_display", "set_kind", "set_order"]].drop_duplicates()
    cat = cat.sort_values("set_order", kind="mergesort")
    if cat["set"].duplicated().any():
        raise TableError(f"set name(s) {sorted(cat.loc[cat['set'].duplicated(), 'set'])} label more than one column")
    if sets is not None:
        unknown = sorted(set(sets) - set(cat["set"]))
        if unknown:
            raise TableError(f"unknown set(s) {unknown}{did_you_mean(unknown[0], cat['set'])} (the metrics hold {list(cat['set'])})")
        keep = cat["set"].isin(list(sets))
        if (keep & (cat["set_kind"] == "generator")).any():
            keep |= cat["set_kind"] == "avg"
        cat = cat[keep]
    if cat.empty:
        raise TableError("no set to show")
    counts = df.groupby("set")[["n_real", "n_fake"]].max() if {"n_real", "n_fake"} <= set(df.columns) else None

    def n(set_name: str, col: str) -> int:
        return int(counts.loc[set_name, col]) if counts is not None and set_name in counts.index else 0

    return [_Group(r.set, r.set_display, metrics, n(r.set, "n_real"), n(r.set, "n_fake"), r.set_kind) for r in cat.itertuples()]


def _detector_labels(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """display_name, plus the weight tag where one name would label two rows."""
    keys = list(dict.fromkeys(zip(df["detector"], df["weights"], df["display_name"])))
    counts = pd.Series([d for _, _, d in keys]).value_counts()
    return {(det, w): (f"{name} ({w})" if counts[name] > 1 else name) for det, w, name in keys}


def _highlight(rows: list[_Row], groups: list[_Group]) -> None:
    metrics = [m for g in groups for m in g.metrics]
    for j, m in enumerate(metrics):
        if m in NOT_HIGHLIGHTED:
            continue
        vals = [r.values[j] for r in rows if not math.isnan(r.values[j])]
        if len(vals) < 2:
            continue
        ranked = sorted(set(vals), reverse=m not in LOWER_IS_BETTER)
        for r in rows:
            v = r.values[j]
            if not math.isnan(v):
                r.marks[j] = "best" if v == ranked[0] else ("second" if len(ranked) > 1 and v == ranked[1] else "")


def _interval(rec: object) -> tuple[float, float] | None:
    """(auc_lo, auc_hi) of a metrics row when evaluate computed them (bootstrap > 0)."""
    lo, hi = (float(getattr(rec, k, math.nan)) for k in ("auc_lo", "auc_hi"))
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _layout(df: pd.DataFrame, metrics: tuple[str, ...], sets, digits: int, ci: bool = True) -> tuple[list[_Group], list[_Row]]:
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise TableError(f"metrics table lacks column(s) {missing}: pass the output of bench.metrics.evaluate")
    bad = [m for m in metrics if m not in HEADERS]
    if bad or not metrics:
        hint = did_you_mean(bad[0], HEADERS) if bad else ""
        raise TableError(f"unknown metric(s) {bad or '(none given)'}{hint} (choose from {list(HEADERS)})")
    df = df.copy()
    df["weights"] = df["weights"].fillna("").astype(str) if "weights" in df.columns else ""
    groups = _columns(df, metrics, sets)
    labels = _detector_labels(df)
    fam_rank = {f: i for i, f in enumerate([*FAMILIES, *[f for f in dict.fromkeys(df["family"]) if f not in FAMILIES]])}
    lookup = {(r.condition, r.detector, r.weights, r.set): r for r in df.itertuples(index=False)}
    rows: list[_Row] = []
    for cond in condition_order(df["condition"].tolist()):
        here = df[df["condition"] == cond]
        dets = list(dict.fromkeys(zip(here["detector"], here["weights"], here["family"])))
        dets.sort(key=lambda d: fam_rank[d[2]])  # stable: appearance order within a family
        rows.append(_Row("block", cond, block=cond))
        block_rows: list[_Row] = []
        family = None
        for det, wt, fam in dets:
            if fam != family:
                rows.append(_Row("family", fam, block=cond, family=fam))
                family = fam
            values, intervals = [], []
            for g in groups:
                rec = lookup.get((cond, det, wt, g.set))
                for m in g.metrics:
                    v = float(getattr(rec, m)) if rec is not None else math.nan
                    values.append(math.nan if math.isnan(v) else float(_fmt(v, digits)))
                    intervals.append(_interval(rec) if m == "auc" and ci else None)
            row = _Row("detector", labels[(det, wt)], cond, fam, det, wt, values, [""] * len(values), intervals)
            rows.append(row)
            block_rows.append(row)
        _highlight(block_rows, groups)
    return groups, rows


# --------------------------------------------------------------------------- formats

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


_MARKUP = {  # per format: best, second, "[lo, hi]" interval templates
    "latex": (r"\textbf{{{}}}", r"\underline{{{}}}", r"$_{{[{},\,{}]}}$"),
    "markdown": ("**{}**", "<u>{}</u>", " [{}, {}]"),
    "html": ("<b>{}</b>", "<u>{}</u>", " [{}, {}]"),
}


def _cell(v: float, mark: str, digits: int, fmt: str, interval: tuple[float, float] | None = None) -> str:
    """One value with its highlight; an AUC with a bootstrap interval gets it after the value
    ("94.7 [90.1, 98.2]"; in LaTeX as a small subscript), unmarked: the mark ranks the value."""
    if math.isnan(v):
        return "-"
    text = _fmt(v, digits)
    if fmt == "latex":
        text = text.replace("-", "$-$", 1)
    best, second, ci = _MARKUP[fmt]
    text = {"best": best, "second": second}.get(mark, "{}").format(text)
    return text + (ci.format(_fmt(interval[0], digits), _fmt(interval[1], digits)) if interval else "")


def _latex(groups: list[_Group], rows: list[_Row], digits: int) -> str:
    n = 1 + sum(len(g.metrics) for g in groups)
    spec = "l " + " ".join("c" * len(g.metrics) for g in groups)
    top, rules, col = [""], [], 2
    for g in groups:
        k = len(g.metrics)
        top.append(rf"\multicolumn{{{k}}}{{c}}{{{latex_escape(g.display)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + k - 1}}}")
        col += k
    sub = ["Detector"] + [latex_escape(HEADERS[m]) for g in groups for m in g.metrics]
    out = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(top) + r" \\", " ".join(rules), " & ".join(sub) + r" \\"]
    prev = ""
    for r in rows:
        if r.kind == "block":
            out += [r"\midrule", rf"\multicolumn{{{n}}}{{c}}{{\textit{{{latex_escape(r.label)}}}}} \\", r"\midrule"]
        elif r.kind == "family":
            if prev == "detector":
                out.append(r"\addlinespace")  # space between families, not under a block header
            out.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{latex_escape(r.label)}}}}} \\")
        else:
            cells = [latex_escape(r.label)] + [_cell(v, m, digits, "latex", ci) for v, m, ci in zip(r.values, r.marks, r.intervals)]
            out.append(" & ".join(cells) + r" \\")
        prev = r.kind
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def _markdown(groups: list[_Group], rows: list[_Row], digits: int) -> str:
    def esc(text: str) -> str:
        return str(text).replace("|", r"\|")

    head = ["Detector"] + [f"{esc(g.display)} {HEADERS[m]}" for g in groups for m in g.metrics]
    n = len(head)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (n - 1)) + "|"]
    for r in rows:
        if r.kind == "detector":
            cells = [esc(r.label)] + [_cell(v, m, digits, "markdown", ci) for v, m, ci in zip(r.values, r.marks, r.intervals)]
        else:
            cells = [f"**{esc(r.label)}**" if r.kind == "block" else f"*{esc(r.label)}*"] + [""] * (n - 1)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _html(groups: list[_Group], rows: list[_Row], digits: int) -> str:
    e = html.escape
    n = 1 + sum(len(g.metrics) for g in groups)
    top = ['<th rowspan="2">Detector</th>'] + [f'<th colspan="{len(g.metrics)}">{e(g.display)}</th>' for g in groups]
    sub = [f"<th>{e(HEADERS[m])}</th>" for g in groups for m in g.metrics]
    out = ["<table>", "<thead>", f"<tr>{''.join(top)}</tr>", f"<tr>{''.join(sub)}</tr>", "</thead>", "<tbody>"]
    for r in rows:
        if r.kind == "detector":
            cells = [f"<td>{e(r.label)}</td>"] + [f"<td>{_cell(v, m, digits, 'html', ci)}</td>" for v, m, ci in zip(r.values, r.marks, r.intervals)]
            out.append(f"<tr>{''.join(cells)}</tr>")
        else:
            text = f"<i>{e(r.label)}</i>" if r.kind == "family" else e(r.label)
            out.append(f'<tr class="{r.kind}"><th colspan="{n}">{text}</th></tr>')
    out += ["</tbody>", "</table>"]
    return "\n".join(out) + "\n"


def _csv(groups: list[_Group], rows: list[_Row], digits: int) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    with_ci = [any(r.intervals[j] for r in rows if r.kind == "detector") for j in range(sum(len(g.metrics) for g in groups))]
    names = [f"{g.set}_{m}" for g in groups for m in g.metrics]
    w.writerow(["block", "family", "detector", "weights", "display_name"]
               + [c for name, has in zip(names, with_ci) for c in ([name, f"{name}_lo", f"{name}_hi"] if has else [name])])

    def num(v: float) -> str:
        return "" if math.isnan(v) else _fmt(v, digits)

    for r in rows:
        if r.kind == "detector":
            cells = []
            for v, ci, has in zip(r.values, r.intervals, with_ci):
                cells += [num(v)] + ([num(ci[0]), num(ci[1])] if ci else ["", ""] if has else [])
            w.writerow([r.block, r.family, r.detector, r.weights, r.label] + cells)
    return buf.getvalue()


def _text(groups: list[_Group], rows: list[_Row], digits: int, width: int = 100) -> str:
    """A terminal summary: Avg first, then every set, each headed by its name and its
    real/fake image counts, the columns wrapped into pages that fit `width` (each page repeats
    the Detector column). A set with fewer than SMALL_SET real or fake images is flagged."""
    from tabulate import tabulate

    order = sorted(range(len(groups)), key=lambda i: groups[i].kind != "avg")  # Avg first, then suite order
    start = {i: sum(len(g.metrics) for g in groups[:i]) for i in range(len(groups))}
    label_w = max([len(r.label) for r in rows] + [8]) + 2
    pages: list[list[int]] = [[]]
    used = label_w
    for i in order:
        g = groups[i]
        need = max(len(g.heading), 7 * len(g.metrics)) + 2
        if pages[-1] and used + need > width:
            pages.append([])
            used = label_w
        pages[-1].append(i)
        used += need
    out = []
    for page in pages:
        headers = ["Detector"]
        for i in page:
            g = groups[i]
            headers += [f"{g.heading}\n{HEADERS[m]}" if k == 0 else f"\n{HEADERS[m]}" for k, m in enumerate(g.metrics)]
        table = []
        for r in rows:
            if r.kind == "detector":
                table.append([r.label] + [_fmt(r.values[start[i] + k], digits) if not math.isnan(r.values[start[i] + k]) else "-"
                                          for i in page for k in range(len(groups[i].metrics))])
            elif r.kind == "block":
                table.append([f"[{r.label}]"] + [""] * (len(headers) - 1))
        out.append(tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True,
                            colalign=("left",) + ("right",) * (len(headers) - 1)))
    notes = ["(columns: a set's name with its real/fake image counts)"]
    if any(g.small for g in groups):
        notes.append(f"† fewer than {SMALL_SET} real or fake images: too few for its numbers to mean much")
    return "\n\n".join(out) + "\n" + "\n".join(notes) + "\n"


_WRITERS = {"latex": _latex, "markdown": _markdown, "csv": _csv, "html": _html, "text": _text}


def render(
    df: pd.DataFrame,
    format: str = "markdown",
    metrics: Sequence[str] = ("auc", "racc", "facc"),
    sets: Sequence[str] | None = None,
    digits: int = 1,
    ci: bool = True,
    width: int | None = None,
) -> str:
    """The metrics table (output of `bench.metrics.evaluate`) as latex, markdown, csv, html or
    text (the terminal summary, wrapped to `width` columns, default the terminal's).

    `metrics` picks the columns of each set group (keys of HEADERS, i.e. evaluate's metric
    columns); `sets` keeps only the named generator/wild sets (Avg, always the mean over all
    generator sets of the suite, is shown whenever a generator set is). LaTeX is a booktabs
    `tabular`; CSV has one plain-number column per `<set>_<metric>` and no highlighting.
    With `ci`, an AUC cell whose bootstrap interval was computed (evaluate(bootstrap=N))
    prints it; CSV gives it as `<set>_auc_lo` / `<set>_auc_hi` columns.
    """
    format = ALIASES.get(format, format)
    if format not in _WRITERS:
        raise TableError(f"unknown table format {format!r}{did_you_mean(format, [*FORMATS, *ALIASES])}; "
                         f"choose from {list(FORMATS)} (or {', '.join(f'{a} for {f}' for a, f in ALIASES.items())})")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if isinstance(sets, str):
        sets = (sets,)
    if not isinstance(digits, int) or digits < 0:
        raise TableError(f"digits must be a non-negative integer, got {digits!r}")
    groups, rows = _layout(df, tuple(metrics), sets, digits, ci)
    if format == "text":
        import shutil

        return _text(groups, rows, digits, width or shutil.get_terminal_size((100, 24)).columns)
    return _WRITERS[format](groups, rows, digits)

