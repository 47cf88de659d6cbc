"""bench.tables: golden renderings of the fixture, LaTeX structure, highlighting rules,
row/column order and filters."""
from __future__ import annotations

import csv
import io
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.metrics import evaluate
from bench.tables import FORMATS, TableError, latex_escape, render

GOLDEN = Path(__file__).parent / "golden"
EXT = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html", "text": "txt"}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return evaluate(pd.read_csv(GOLDEN / "scores_fixture.csv"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden(table, fmt):
    """The fixture (checked by eye once) must render byte for byte as stored.
    AIGI_BENCH_UPDATE_GOLDEN=1 rewrites the files after an intended change; that run fails on
    purpose (it compares nothing), so only a rerun without it can be green."""
    path = GOLDEN / f"table.{EXT[fmt]}"
    text = render(table, fmt, width=90)  # text wraps to a width: fixed here, the terminal's in a run
    if os.environ.get("AIGI_BENCH_UPDATE_GOLDEN") == "1":
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        pytest.fail(f"golden file {path.name} rewritten ({'changed' if changed else 'unchanged'}); "
                    "check the diff and rerun without AIGI_BENCH_UPDATE_GOLDEN")
    assert text == path.read_text()


# --------------------------------------------------------------------------- LaTeX structure


def latex_row_widths(tex: str) -> tuple[int, list[int]]:
    """(columns in the tabular spec, columns spanned by every row ending in \\\\)."""
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex).group(1)
    ncol = len(re.findall(r"[lcr]", spec))
    widths = []
    for line in tex.splitlines():
        if not line.rstrip().endswith(r"\\"):
            continue
        body = line.rstrip()[:-2]
        cells = re.split(r"(?<!\\)&", body)
        width = 0
        for c in cells:
            m = re.match(r"\s*\\multicolumn\{(\d+)\}", c)
            width += int(m.group(1)) if m else 1
        widths.append(width)
    return ncol, widths


def braces_balanced(tex: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("metrics", [("auc", "racc", "facc"), ("ap",), ("auc", "ap", "racc", "facc", "acc", "eer", "tpr1", "tpr5", "asym")])
def test_latex_structure(table, metrics):
    tex = render(table, "latex", metrics=metrics)
    assert tex.startswith(r"\begin{tabular}") and tex.rstrip().endswith(r"\end{tabular}")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr)"):
        assert rule in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert braces_balanced(tex)
    ncol, widths = latex_row_widths(tex)
    assert ncol == 1 + 4 * len(metrics)
    assert widths and all(w == ncol for w in widths)
    # cmidrules cover the set columns exactly once
    spans = [tuple(map(int, m)) for m in re.findall(r"\\cmidrule\(lr\)\{(\d+)-(\d+)\}", tex)]
    assert spans[0][0] == 2 and spans[-1][1] == ncol
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans))


def test_latex_escapes_names(table):
    t = table.copy()
    t.loc[t["detector"] == "corvi", "display_name"] = "A&B_c 100% #1 {x} ~^\\"
    tex = render(t, "latex")
    assert r"A\&B\_c 100\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}" in tex
    assert braces_balanced(tex)
    ncol, widths = latex_row_widths(tex)
    assert all(w == ncol for w in widths)
    assert latex_escape("Wuerst.") == "Wuerst." and latex_escape("R.Acc") == "R.Acc"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine installed")
@pytest.mark.parametrize("which", ["golden", "all-metrics"])
def test_latex_compiles(tmp_path, table, which):
    all_metrics = ("auc", "ap", "racc", "facc", "acc", "eer", "tpr1", "tpr5", "asym")  # incl. negative R-F
    body = (GOLDEN / "table.tex").read_text() if which == "golden" else render(table, "latex", metrics=all_metrics)
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\tiny\n" + body + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], check=False, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0


# --------------------------------------------------------------------------- highlighting


def synthetic(values: dict[str, list[float]], families=None, condition="Original") -> pd.DataFrame:
    """A metrics table of one generator set "g" and its Avg, one row per detector."""
    n = len(next(iter(values.values())))
    families = families or ["CNN"] * n
    rows = []
    for i in range(n):
        for set_, kind, order in (("g", "generator", 0), ("avg", "avg", 1)):
            row = {"condition": condition, "detector": f"d{i}", "weights": "", "display_name": f"D{i}", "family": families[i],
                       "calibrated": True, "set": set_, "set_display": set_.upper(), "set_kind": kind, "set_order": order}
            row.update({k: v[i] for k, v in values.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def marks(md: str, detector: str) -> list[str]:
    """Cells of one detector's markdown row (all blocks), tagged best/second/plain."""
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == detector:
            out += ["best" if c.startswith("**") else "second" if c.startswith("<u>") else c for c in cells[1:]]
    return out


def test_best_and_second_best():
    t = synthetic({"auc": [90, 95, 95, 80], "eer": [10, 5, 20, np.nan], "asym": [1, -30, 0, 5]})
    md = render(t, "markdown", metrics=("auc", "eer", "asym"), sets=["g"])
    # columns: G AUC, G EER, G R-F, Avg AUC, Avg EER, Avg R-F
    assert marks(md, "D1")[:3] == ["best", "best", "-30.0"]  # tie at 95: both bold; EER lower is better
    assert marks(md, "D2")[:3] == ["best", "20.0", "0.0"]
    assert marks(md, "D0")[:3] == ["second", "second", "1.0"]  # asym never highlighted
    assert marks(md, "D3")[:3] == ["80.0", "-", "5.0"]
    tex = render(t, "latex", metrics=("auc", "eer"))
    assert tex.count(r"\textbf{95.0}") == 4 and tex.count(r"\underline{90.0}") == 2
    assert r"\textbf{5.0}" in tex and r"\underline{10.0}" in tex
    html = render(t, "html", metrics=("auc",))
    assert html.count("<b>95.0</b>") == 4 and html.count("<u>90.0</u>") == 2


def test_highlight_compares_printed_values():
    t = synthetic({"auc": [90.04, 90.01, 89.0]})
    md = render(t, "markdown", metrics=("auc",), sets=["g"])
    assert marks(md, "D0")[0] == marks(md, "D1")[0] == "best"  # both print 90.0
    assert marks(md, "D2")[0] == "second"
    md2 = render(t, "markdown", metrics=("auc",), sets=["g"], digits=2)
    assert marks(md2, "D0")[0] == "best" and marks(md2, "D1")[0] == "second" and marks(md2, "D2")[0] == "89.00"


def test_highlight_needs_two_values_and_is_per_block():
    one = synthetic({"auc": [70.0]})
    assert "**70.0**" not in render(one, "markdown", metrics=("auc",))
    two = pd.concat([synthetic({"auc": [70.0, 60.0]}), synthetic({"auc": [10.0, 20.0]}, condition="Post-processed")])
    md = render(two, "markdown", metrics=("auc",), sets=["g"])
    assert marks(md, "D0")[::2] == ["best", "second"] and marks(md, "D1")[::2] == ["second", "best"]


def test_no_negative_zero():
    md = render(synthetic({"asym": [-0.04, 3.0]}), "markdown", metrics=("asym",))
    assert "-0.0" not in md and "| 0.0 |" in md


# --------------------------------------------------------------------------- order and filters


def test_row_order_groups_families(table):
    md = render(table, "markdown")
    first = [ln.split("|")[1].strip() for ln in md.splitlines()[2:]]
    assert first == ["**Original**", "*CNN*", "Corvi", "*CLIP*", "UnivFD",
                     "**Post-processed**", "*CNN*", "Corvi", "*CLIP*", "UnivFD"]
    t = synthetic({"auc": [1, 2, 3, 4]}, families=["training-free", "Odd", "ViT", "CLIP"])
    order = [ln.split("|")[1].strip() for ln in render(t, "markdown", metrics=("auc",)).splitlines()[2:]]
    assert order == ["**Original**", "*CLIP*", "D3", "*ViT*", "D2", "*training-free*", "D0", "*Odd*", "D1"]


def test_extra_condition_blocks_follow(table):
    extra = table[table["condition"] == "Original"].assign(condition="webp:quality=50")
    md = render(pd.concat([extra, table]), "markdown")
    blocks = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| **")]
    assert blocks == ["**Original**", "**Post-processed**", "**webp:quality=50**"]


def test_columns_and_set_filter(table):
    head = render(table, "markdown", metrics=("auc",)).splitlines()[0]
    assert [c.strip() for c in head.strip("|").split("|")] == ["Detector", "SD AUC", "GAN AUC", "Avg AUC", "Wild AUC"]
    head = render(table, "markdown", metrics=("auc",), sets=["gan"]).splitlines()[0]
    assert "GAN AUC" in head and "Avg AUC" in head and "SD AUC" not in head and "Wild" not in head
    head = render(table, "markdown", metrics=("auc",), sets=["wild"]).splitlines()[0]
    assert [c.strip() for c in head.strip("|").split("|")] == ["Detector", "Wild AUC"]
    with pytest.raises(TableError, match="unknown set"):
        render(table, sets=["nope"])
    with pytest.raises(TableError, match=r"unknown set\(s\) \['gann'\]; did you mean 'gan'\?"):
        render(table, sets=["gann"])


def test_bad_options(table):
    with pytest.raises(TableError, match="unknown table format"):
        render(table, "rtf")
    with pytest.raises(TableError, match="unknown metric"):
        render(table, metrics=("f1",))
    with pytest.raises(TableError, match=r"\['aucc'\]; did you mean 'auc'"):
        render(table, metrics=("aucc",))
    with pytest.raises(TableError, match="lacks column"):
        render(table.drop(columns=["family"]))


def test_markdown_rows_have_equal_width(table):
    lines = render(table, "markdown", metrics=("auc", "ap", "eer")).splitlines()
    assert len({ln.count("|") for ln in lines}) == 1


def test_csv_is_plain(table):
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert len(rows) == 4
    r = rows[0]
    assert (r["block"], r["family"], r["detector"], r["display_name"]) == ("Original", "CNN", "corvi", "Corvi")
    assert r["gan_auc"] == "81.3" and r["avg_facc"] == "75.0"
    assert rows[1]["sd_racc"] == "" and rows[1]["sd_auc"] == "100.0"  # uncalibrated: empty, not "-"
    assert all("*" not in v and "<" not in v for row in rows for v in row.values())


def test_html_headers(table):
    html = render(table, "html", metrics=("auc", "ap"))
    thead = html.split("<thead>")[1].split("</thead>")[0]
    assert thead.count("<tr>") == 2
    assert [int(x) for x in re.findall(r'colspan="(\d+)"', thead)] == [2, 2, 2, 2]
    assert 'rowspan="2">Detector' in thead
    body_rows = html.split("<tbody>")[1].split("</tbody>")[0].strip().splitlines()
    for row in body_rows:
        assert row.count("<td>") in (0, 9)


def test_same_display_name_gets_weight_tag(table):
    twin = table[table["detector"] == "corvi"].assign(weights="official")
    md = render(pd.concat([table, twin]), "markdown", metrics=("auc",))
    assert "| Corvi (mini) |" in md and "| Corvi (official) |" in md


def test_bootstrap_intervals_are_printed_next_to_auc():
    """evaluate(bootstrap=N) intervals appear after each AUC they belong to, Avg's included, in
    every format; without them the table is the golden one."""
    from test_metrics import enlarged

    t = evaluate(enlarged(pd.read_csv(GOLDEN / "scores_fixture.csv")), bootstrap=50, seed=1)
    row = t[(t["condition"] == "Original") & (t["detector"] == "corvi") & (t["set"] == "sd")].iloc[0]
    lo, hi = f"{row.auc_lo:.1f}", f"{row.auc_hi:.1f}"
    assert row.auc_lo <= row.auc <= row.auc_hi
    md = render(t, "markdown")
    assert f"[{lo}, {hi}]" in md and md.count("[") == int(t["auc_lo"].notna().sum())
    assert rf"$_{{[{lo},\,{hi}]}}$" in render(t, "latex")
    assert f"[{lo}, {hi}]" in render(t, "html")
    rows = list(csv.DictReader(io.StringIO(render(t, "csv"))))
    corvi = next(r for r in rows if r["block"] == "Original" and r["detector"] == "corvi")
    assert (corvi["sd_auc_lo"], corvi["sd_auc_hi"]) == (lo, hi)
    avg = t[(t["condition"] == "Original") & (t["detector"] == "corvi") & (t["set"] == "avg")].iloc[0]
    assert (corvi["avg_auc_lo"], corvi["avg_auc_hi"]) == (f"{avg.auc_lo:.1f}", f"{avg.auc_hi:.1f}")
    assert render(t, "markdown", ci=False) == render(evaluate(enlarged(pd.read_csv(GOLDEN / "scores_fixture.csv"))), "markdown")
    ncol, widths = latex_row_widths(render(t, "latex"))
    assert set(widths) == {ncol}
