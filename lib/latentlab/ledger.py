"""The claims ledger: one row per claim a method notebook tests, written as figures/<notebook>/claims.csv, and the
README's results section generated from every notebook's ledger (so no result in the README is typed by hand).

A notebook's flow, after its verdict table (`stats.compare`) and its instruments table (`gates`):

    LEDGER = ledger.claims(verdicts, paper="AISEL (Chen et al. 2021)")
    ledger.save(LEDGER, INSTRUMENTS, NB)        # claims.csv and instruments.csv beside results.csv
    LEDGER                                       # the takeaways start from this printed table

`python -m latentlab.ledger readme` (`make readme`) rewrites the README between the markers below from the
committed ledgers; `--check` exits non-zero when the README differs (tests/test_ledger.py runs the check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from latentlab.plotting import figure_dir
from latentlab.results import INSTRUMENT_COLUMNS
from latentlab.stats import verdict_kind

COLUMNS = ["claim_id", "claim", "paper", "dataset", "metric", "paper_effect", "mean", "low", "high", "low_fw",
           "high_fw", "n", "verdict", "instruments_ok"]
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
REPO = Path(__file__).resolve().parents[2]


def claims(verdicts: pd.DataFrame, *, paper: str) -> pd.DataFrame:
    """The ledger of a verdict table from `stats.compare` (one row per dataset x comparison x metric).

    claim_id numbers the rows in table order; instruments_ok is False where a failed gate left the claim untested.
    """
    missing = [c for c in ("comparison", "metric", "paper", "mean", "low", "high", "low_fw", "high_fw", "n", "verdict")
               if c not in verdicts.columns]
    if missing:
        raise ValueError(f"A ledger is built from stats.compare's table; it lacks the columns {missing}.")
    v = verdicts.reset_index(drop=True)
    return pd.DataFrame({
        "claim_id": np.arange(1, len(v) + 1), "claim": v["comparison"], "paper": paper,
        "dataset": v["dataset"] if "dataset" in v else "", "metric": v["metric"],
        "paper_effect": pd.to_numeric(v["paper"], errors="coerce"), "mean": v["mean"], "low": v["low"],
        "high": v["high"], "low_fw": v["low_fw"], "high_fw": v["high_fw"], "n": v["n"], "verdict": v["verdict"],
        "instruments_ok": ~v["verdict"].astype(str).str.startswith("not tested")})[COLUMNS]


def save(ledger: pd.DataFrame | None, instruments: pd.DataFrame, notebook: str) -> list[Path]:
    """Write <figures>/<notebook>/claims.csv (unless ledger is None: a notebook without claims, such as 00) and
    instruments.csv (the gates' rows), refusing other columns."""
    tables = {"instruments": (instruments, INSTRUMENT_COLUMNS)} | (
        {"claims": (ledger, COLUMNS)} if ledger is not None else {})
    paths = []
    for name, (df, cols) in sorted(tables.items()):
        if list(df.columns[:len(cols)]) != cols:
            raise ValueError(f"{name}.csv needs the columns {cols} first; got {list(df.columns)}.")
        paths.append(figure_dir(notebook) / f"{name}.csv")
        df.to_csv(paths[-1], index=False)
    return paths


# --------------------------------------------------------------------------- a scale check's record

SCALE = "scale"  # the profile (configs/scale.yaml) whose run commits figures/<notebook>/scale/scale_check.csv


def scale_record(check: pd.DataFrame, notebook: str, figures: Path | str | None = None) -> tuple[pd.DataFrame, str]:
    """The scale check a notebook shows, and where it comes from. A run that computed one (`stats.scale_check`, not
    empty: SCALE_SEEDS set) writes it as <figures>/<notebook>/scale_check.csv and shows it; a run that did not (the
    default profile's SCALE_SEEDS is []) shows the committed record of `make figures NB=... PROFILE=scale`,
    figures/<notebook>/scale/scale_check.csv, with the commit and time of its MANIFEST.json (an empty table and how to
    make it when there is none). `figures`: the committed figures/ folder (default: the repository's)."""
    if len(check):
        path = figure_dir(notebook) / "scale_check.csv"
        check.to_csv(path, index=False)
        return check, f"computed in this run (SCALE_SEEDS set), written to {path}"
    folder = Path(figures or REPO / "figures") / notebook / SCALE
    if not (folder / "scale_check.csv").exists():
        return check, (f"no scale check in this run and no committed record: `make figures NB='{notebook}' "
                       f"PROFILE={SCALE}` writes one to {folder}/")
    record = pd.read_csv(folder / "scale_check.csv")
    manifest = folder / "MANIFEST.json"
    about = ""
    if manifest.exists():
        m = json.loads(manifest.read_text())
        about = (f" (commit {str(m.get('commit'))[:7]}{', uncommitted changes' if m.get('dirty') else ''}; "
                 f"{m.get('wall_s')} s wall, {m.get('cpu_s')} CPU-s)")
    return record, f"the committed record of `make figures NB='{notebook}' PROFILE={SCALE}`{about}: {folder.name}/"


def scale_section(root: Path | str) -> str:
    """The README's table of every committed scale check (<root>/<notebook>/scale/scale_check.csv): per notebook,
    dataset and claim, the mean paired difference at 1x and at the scale profile's budget, the change, the seed sd
    and whether it moved beyond it."""
    paths = sorted(Path(root).glob(f"*/{SCALE}/scale_check.csv"))
    if not paths:
        return ""
    lines = ["### Scale checks (4x the generative budget, `make figures PROFILE=scale`)", "",
             "| notebook | dataset | claim | metric | n | 1x | 4x | change | seed sd | moved |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        for r in pd.read_csv(path).itertuples():
            claim = r.comparison + (f" ({r.classifier})" if "classifier" in r._fields else "")
            lines.append(f"| {path.parent.parent.name} | {r.dataset} | {claim} | {r.metric} | {r.n} | "
                         f"{r.mean_base:+.2f} | {r.mean_scaled:+.2f} | {r.change:+.2f} | {r.seed_sd:.2f} | "
                         f"{'yes' if r.moved else 'no'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the README's results section


def _interval(low: float, high: float) -> str:
    return f"[{low:+.2f}, {high:+.2f}]" if np.isfinite(low) and np.isfinite(high) else "–"


def notebook_section(notebook: str, ledger: pd.DataFrame, instruments: pd.DataFrame | None) -> str:
    """One notebook's part of the results section: a verdict count, the failed gates, and the claims table."""
    heads = ledger["verdict"].astype(str).map(verdict_kind)
    counts = ", ".join(f"{k} {v}" for k, v in heads.value_counts().sort_index().items())
    lines = [f"### {notebook} ({ledger['paper'].iloc[0]})", "", f"{len(ledger)} claims: {counts}."]
    if instruments is not None and len(instruments):
        failed = instruments[~instruments["passed"].astype(bool)]
        gates = sorted(set(failed["instrument"] + "/" + failed["check"]))
        lines.append(f"Instrument checks: {len(instruments)} rows, {len(failed)} failed"
                     + (f" ({', '.join(gates)})." if gates else "."))
    lines += ["", "| dataset | claim | metric | mean | 95 % CI | family-wise CI | paper | n | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in ledger.itertuples():
        paper = f"{r.paper_effect:+.1f}" if np.isfinite(r.paper_effect) else "–"
        mean = f"{r.mean:+.2f}" if np.isfinite(r.mean) else "–"
        lines.append(f"| {r.dataset} | {r.claim} | {r.metric} | {mean} | {_interval(r.low, r.high)} | "
                     f"{_interval(r.low_fw, r.high_fw)} | {paper} | {r.n} | {r.verdict} |")
    return "\n".join(lines)


def results_section(root: Path | str) -> str:
    """The README's results section from every <root>/<notebook>/claims.csv, notebooks in order."""
    root = Path(root)
    parts = ["Generated by `make readme` from `figures/*/claims.csv`; do not edit by hand.\n"
             "Differences are in points (x 100) of the metric; the verdict word comes from the family-wise interval."]
    for path in sorted(root.glob("*/claims.csv")):
        inst = path.with_name("instruments.csv")
        parts.append(notebook_section(path.parent.name, pd.read_csv(path, keep_default_na=False, na_values=[""]),
                                      pd.read_csv(inst) if inst.exists() else None))
    if len(parts) == 1:
        parts.append("No notebook has written a ledger yet (`make figures`).")
    scale = scale_section(root)
    return "\n\n".join(parts + ([scale] if scale else []))


def render_readme(text: str, section: str) -> str:
    """text with everything between the claims markers replaced by section."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"The README needs exactly one {BEGIN} followed by one {END}.")
    head, rest = text.split(BEGIN)
    return f"{head}{BEGIN}\n{section}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentlab.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["readme"])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README differs from the ledgers")
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--figures", default=str(REPO / "figures"))
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    new = render_readme(text, results_section(args.figures))
    if args.check:
        if new != text:
            print(f"{readme} differs from the ledgers in {args.figures}: run `make readme`.", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
