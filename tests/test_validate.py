"""The strict smoke check and `make validate` (lib/latentlab/validate.py): sanitizers, references, the numeric
summary, and a guard that fails with a readable diff when one smoke parameter changes."""

from __future__ import annotations

import json
import re
import textwrap

import nbformat
import papermill as pm
import pytest

from latentlab import runner, validate

PATTERNS = validate.sanitizers()
STORED = validate.sanitizers(stored=True)


@pytest.mark.parametrize("text, want", [
    ("753 s so far", "<time> s so far"),
    ("results.csv written; total run time 854 s", "results.csv written; total run time <time> s"),
    ("8 tasks, 856 result rows, 90 instrument rows, 826 s", "8 tasks, 856 result rows, 90 instrument rows, <time> s"),
    ("10 tasks, 1338 result rows, 330 gate rows; 1.4 min so far", "10 tasks, 1338 result rows, 330 gate rows; "
     "<time> min so far"),
    ("whole notebook: 1.5 min wall", "whole notebook: <time> min wall"),
    ("notebook: 892 s wall, 38 s CPU in this process", "notebook: <time> s wall, <time> s CPU in this process"),
    ("(commit 4693265; 1487.8 s wall, 2624.8 CPU-s): scale/", "(commit 4693265; <time> s wall, <time> CPU-s): "
     "scale/"),
    ("3 steps 1.3 ms per image", "3 steps <time> ms per image"),
    ("written to /tmp/x/build/smoke/figures/01_aisel/scale_check.csv", "written to <path>"),
    ("<function f at 0x7f3a2b1c4d60>", "<function f at 0x<addr>>"),
    ("2 worker processes; 1 datasets x 4 seeds", "<n> worker processes; 1 datasets x 4 seeds"),
    ("2 settings x 5 seeds x 10 arms x 3 classifiers; workers: 2", "2 settings x 5 seeds x 10 arms x 3 classifiers; "
     "workers: <n>"),
    ("grid workers                     2\nmodel cache ($LATENTLAB_CACHE)  /root/.cache/latentlab/models",
     "grid workers <n>\nmodel cache ($LATENTLAB_CACHE) <path>"),
])
def test_sanitizers_replace_what_varies(text, want):
    assert validate.sanitize(text, PATTERNS) == want


@pytest.mark.parametrize("text", [
    "accuracy 0.740 ± 0.086, AUC 0.853 ± 0.124",
    "pneumoniamnist    0/4      0/4",
    "m = 126, M = 1134, 4 seeds; paper: n = 126, m = 1134, M = 10000",
    "eps = 0.5 x radius = 1.89, 10 steps, T = 16",
    "at least one pass over its 4708 training images, so ORACLE_STEPS = 50 means 74 updates",
    "mnist@5 latent-interpolation − baseline   5.44  12.76",
    "t = 0.05:   409 draws for 100 labels",
])
def test_sanitizers_leave_results_alone(text):
    assert validate.sanitize(text, STORED) == text  # what a reference stores
    assert validate.sanitize(text, PATTERNS) == re.sub(" +", " ", text)  # compared: the table layout aside


def test_numeric_difference_reads_tables_whose_columns_realign():
    ref = "arm    auc\nnative  9.99\nrandom  0.50"
    new = "arm     auc\nnative  10.02\nrandom   0.50"
    d, where = validate.numeric_difference(ref, new)
    assert d == pytest.approx(0.03) and "reference 9.99, now 10.02" in where
    assert validate.numeric_difference("accuracy 0.5", "loss 0.5")[0] is None


def _cell_outputs(*texts):
    return [nbformat.v4.new_output("stream", name="stdout", text=t) for t in texts]


def test_references_store_sanitized_text_and_no_images(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=1)
    cell.outputs = [*_cell_outputs("3 s so far\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                 "text/plain": "<Figure size 4x4 with 1 Axes>"})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "run.ipynb")
    ref = nbformat.read(validate.write_reference(tmp_path / "run.ipynb", tmp_path / "ref.ipynb", STORED), 4)
    outs = ref.cells[0].outputs
    assert outs[0].text == "<time> s so far\n"
    assert outs[1].data == {"text/plain": "<Figure size 4x4 with 1 Axes>"}
    assert ref.metadata["latentlab"]["machine"] == validate.machine()  # the strict check holds on this machine kind


def test_the_machine_kind_names_what_changes_rounding():
    import platform

    import torch

    here = validate.machine()
    assert here == validate.machine()  # the same every call: a reference made here is checked strictly here
    assert here["arch"] == platform.machine() and here["torch"] == torch.__version__
    assert here["capability"] == torch.backends.cpu.get_cpu_capability() and len(here["flags"]) == 12


def test_a_stale_reference_is_refused_before_anything_runs(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("print(x)")]
    ref = nbformat.from_dict(json.loads(json.dumps(nb)))
    ref.cells[1].outputs, ref.cells[1].execution_count = _cell_outputs("1\n"), 2
    nbformat.write(ref, tmp_path / "ref.ipynb")
    nbformat.write(nb, tmp_path / "now.ipynb")
    assert validate.attach_reference(tmp_path / "now.ipynb", tmp_path / "ref.ipynb") == []
    assert nbformat.read(tmp_path / "now.ipynb", 4).cells[1].outputs[0].text == "1\n"
    nb.cells[1].source = "print(x + 1)"
    nbformat.write(nb, tmp_path / "now.ipynb")
    problems = validate.attach_reference(tmp_path / "now.ipynb", tmp_path / "ref.ipynb")
    assert problems and "code cell 1 changed" in problems[0]


def test_every_reference_matches_its_notebook(tmp_path):
    """A notebook edited without `make smoke-reference` fails here, in seconds, instead of after the smoke run."""
    stale = []
    for nb in runner.notebooks("*"):
        reference = validate.REFERENCES / nb.name
        if not reference.exists():
            continue  # a new notebook: `make smoke` runs it unchecked and says so
        pm.execute_notebook(str(nb), str(tmp_path / nb.name), parameters=runner.injected("smoke"), prepare_only=True,
                            kernel_name="python3", progress_bar=False)
        stale += [f"{nb.name}: {p}" for p in validate.attach_reference(tmp_path / nb.name, reference)]
    assert not stale, "run `make smoke-reference NB=...` for:\n" + "\n".join(stale)


GUARD = "99_guard"


def _guard_notebook(path):
    """A notebook of the repository's shape, at its smallest: a parameters cell, the profile applied from
    configs/<profile>.yaml, a result printed at a stated precision, and a timing that the sanitizers absorb."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "default"\nSTEPS = 3')
    params.metadata["tags"] = ["parameters"]
    body = textwrap.dedent("""\
        import time
        from latentlab.config import apply_profile
        apply_profile(globals(), PROFILE, "99_guard", ["STEPS"])
        start = time.perf_counter()
        loss = sum(1 / (k + 1) ** 2 for k in range(STEPS))
        print(f"{STEPS} steps: loss {loss:.4f}; {time.perf_counter() - start + 3:.1f} s so far")""")
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = dict(runner.KERNELSPEC)
    nbformat.write(nb, path)


def _prepare(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(src), str(dst), parameters={"PROFILE": "smoke"}, prepare_only=True,
                        kernel_name="python3", progress_bar=False)


def test_changing_one_smoke_parameter_fails_the_strict_check_with_a_readable_diff(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("LATENTLAB_CONFIGS", str(configs))  # the kernel inherits it
    (configs / "smoke.yaml").write_text(f"{GUARD}:\n  STEPS: 5\n")
    src = tmp_path / f"{GUARD}.ipynb"
    _guard_notebook(src)

    # the reference, as `make smoke-reference` makes it
    _prepare(src, tmp_path / "ref" / src.name)
    run = validate._nbval([tmp_path / "ref" / src.name], record=tmp_path / "ref" / "executed", lax=True,
                          capture=True)
    assert run.returncode == 0, run.stdout
    reference = validate.write_reference(tmp_path / "ref" / "executed" / src.name, tmp_path / "reference.ipynb",
                                         STORED)
    assert "5 steps: loss 1.4636; <time> s so far" in nbformat.read(reference, 4).cells[-1].outputs[0].text

    # unchanged: the strict check passes (the timing differs and is sanitized)
    _prepare(src, tmp_path / "a" / src.name)
    assert validate.attach_reference(tmp_path / "a" / src.name, reference) == []
    run = validate._nbval([tmp_path / "a" / src.name], record=tmp_path / "a" / "executed", capture=True)
    assert run.returncode == 0, run.stdout

    # one smoke parameter changed: the strict check fails and says where and by how much
    (configs / "smoke.yaml").write_text(f"{GUARD}:\n  STEPS: 6\n")
    _prepare(src, tmp_path / "b" / src.name)
    assert validate.attach_reference(tmp_path / "b" / src.name, reference) == []
    run = validate._nbval([tmp_path / "b" / src.name], record=tmp_path / "b" / "executed", capture=True)
    assert run.returncode != 0
    out = run.stdout
    assert "Cell outputs differ" in out, out
    assert "5 steps: loss 1.4636" in out and "6 steps: loss 1.4914" in out, out  # reference and new, side by side
    # the injected parameters cell is cell 1, so the printing cell is cell 2
    assert "3 cells run, 3 compared with the reference, 1 differ or fail" in out, out
    assert "cell 2: largest numeric difference 1 (stdout: reference 5, now 6, in '5 steps: loss 1.4636" in out, out
