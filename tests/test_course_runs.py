"""Runs by profile (`make run`): executed copies in build/<profile>/, never the tracked tree; smoke outputs say so."""

from __future__ import annotations

import json
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from latentlab import config, plotting, runner  # noqa: E402

TINY = [
    ("N = 3\nPROFILE = None", ["parameters"]),
    ("from latentlab import config\n"
     "config.apply_profile(globals(), PROFILE, '07_tiny', ['N'])\nconfig.announce(PROFILE)", []),
    ("import matplotlib.pyplot as plt\nfrom latentlab import plotting\n"
     "fig, ax = plt.subplots()\nax.plot(range(N))\nax.set_title('line')\nplotting.savefig(fig, 'line', '07_tiny')\n"
     "plt.show()\nprint('N is', N)", []),
]


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    """A committed git repository with one tiny notebook (notebooks/07_tiny.ipynb), a smoke profile and a tracked
    figures/ folder; the runner pointed at it."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, metadata={"tags": tags})
                                         for src, tags in TINY])
    nb.metadata["kernelspec"] = dict(runner.KERNELSPEC)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "figures" / "07_tiny").mkdir(parents=True)
    (tmp_path / "figures" / "07_tiny" / "results.csv").write_text("committed\n")
    nbformat.write(nb, tmp_path / "notebooks" / "07_tiny.ipynb")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.yaml").write_text("07_tiny:\n  N: 5\n")
    (tmp_path / ".gitignore").write_text("build/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], check=True)
    monkeypatch.setattr(runner, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(runner, "BUILD", tmp_path / "build")
    monkeypatch.setattr(runner, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(runner, "REPO", tmp_path)
    monkeypatch.setattr(runner, "CONFIGS", tmp_path / "configs")
    monkeypatch.setattr(config, "CONFIGS", tmp_path / "configs")
    monkeypatch.setenv("LATENTLAB_CONFIGS", str(tmp_path / "configs"))  # the kernel reads the profile from here
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path / "elsewhere"))  # run must override it
    monkeypatch.setattr(runner, "profiles", lambda: ["smoke"])
    return tmp_path


def test_run_writes_build_profile_and_leaves_the_tracked_tree_clean(tiny_repo, capsys):
    before = (tiny_repo / "notebooks" / "07_tiny.ipynb").read_bytes()
    [out] = runner.run("smoke", "07*")
    assert out == tiny_repo / "build" / "smoke" / "07_tiny.ipynb"
    status = subprocess.run(["git", "-C", str(tiny_repo), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    assert status == "" and (tiny_repo / "notebooks" / "07_tiny.ipynb").read_bytes() == before
    assert (tiny_repo / "figures" / "07_tiny" / "results.csv").read_text() == "committed\n"
    assert not (tiny_repo / "elsewhere").exists()

    executed = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "N is 5" in text and config.SMOKE_BANNER in text  # smoke values, and the banner says so
    figs = tiny_repo / "build" / "smoke" / "figures" / "07_tiny"
    assert (figs / "line.png").stat().st_size > 1000 and (figs / "line.pdf").exists()
    manifest = json.loads((figs / "MANIFEST.json").read_text())
    head = subprocess.run(["git", "-C", str(tiny_repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert manifest["commit"] == head and manifest["dirty"] is False and manifest["profile"] == "smoke"
    assert manifest["parameters"] == {"N": 5}
    assert manifest["wall_s"] > 0 and manifest["cpu_s"] > 0  # the kernel's CPU time, not this process's
    assert manifest["packages"]["torch"] and manifest["packages"]["python"]
    printed = capsys.readouterr().out
    assert str(out) in printed and str(figs) in printed  # it says where things are


def test_figures_writes_in_place_with_a_manifest(tiny_repo, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # a headless shell's backend must not reach the kernel
    runner.figures("default", "07*")
    figs = tiny_repo / "figures" / "07_tiny"
    manifest = json.loads((figs / "MANIFEST.json").read_text())
    assert manifest["parameters"] == {"N": 3} and manifest["profile"] == "default"
    executed = nbformat.read(tiny_repo / "notebooks" / "07_tiny.ipynb", as_version=4)
    assert any("N is 3" in o.get("text", "") for o in executed.cells[-1].outputs)
    assert any("image/png" in o.get("data", {}) for o in executed.cells[-1].outputs)  # the figure is an output
    assert not (tiny_repo / "build").exists()
    import os

    assert os.environ["MPLBACKEND"] == "Agg"  # and the caller's environment is as it was


def test_figures_at_another_profile_write_beside_the_default_and_leave_the_notebook(tiny_repo):
    before = (tiny_repo / "notebooks" / "07_tiny.ipynb").read_bytes()
    runner.figures("smoke", "07*")
    folder = tiny_repo / "figures" / "07_tiny" / "smoke"
    assert (tiny_repo / "notebooks" / "07_tiny.ipynb").read_bytes() == before  # the default's outputs stay
    assert (tiny_repo / "figures" / "07_tiny" / "results.csv").read_text() == "committed\n"
    executed = nbformat.read(folder / "07_tiny.ipynb", as_version=4)
    assert any("N is 5" in o.get("text", "") for o in executed.cells[-1].outputs)
    assert (folder / "line.png").exists() and not (tiny_repo / "figures" / "07_tiny" / "line.png").exists()
    assert json.loads((folder / "MANIFEST.json").read_text())["profile"] == "smoke"
    import os

    assert config.PROFILE_DIR not in os.environ  # the next default run writes figures/<notebook>/ again


def test_smoke_figures_say_smoke_in_every_title(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    config.announce("smoke")
    fig, axes = plt.subplots(1, 2)  # the figure hook stamps it at creation
    assert any("SMOKE" in t.get_text() for t in fig.texts)
    axes[0].set_title("AUC")
    axes[1].set_title("accuracy")
    fig.suptitle("verdicts")
    plotting.savefig(fig, "f", "99_t")
    assert [ax.get_title() for ax in axes] == ["SMOKE · AUC", "SMOKE · accuracy"]
    assert fig._suptitle.get_text() == "SMOKE · verdicts"
    plotting.mark_smoke(fig)  # idempotent
    assert axes[0].get_title() == "SMOKE · AUC" and sum("SMOKE" in t.get_text() for t in fig.texts) == 2
    plt.close(fig)

    config.announce("default")
    fig, ax = plt.subplots()  # the hook stays, but only marks when the profile is smoke ...
    ax.set_title("AUC")
    plotting.savefig(fig, "g", "99_t")
    assert ax.get_title() == "AUC"
    plt.close(fig)


def test_smoke_copies_hold_no_default_outputs(tmp_path, monkeypatch):
    nb = runner.notebooks("00*")[0]
    runner.smoke("00*", out=tmp_path)
    copy = nbformat.read(tmp_path / nb.name, as_version=4)
    code = [c for c in copy.cells if c.cell_type == "code"]
    assert all(c.outputs == [] for c in code)
    assert any("injected-parameters" in c.metadata.get("tags", []) and "smoke" in c.source for c in code)
