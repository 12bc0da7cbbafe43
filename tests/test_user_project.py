"""Issue 17's acceptance test: ActLab installed into somebody else's project.

A throwaway project in a temporary folder outside the repository, with its own venv and its own
top-level `core` and `dashboard` packages (common names, and ActLab's folder names). ActLab is
installed from a copy of this clone with `pip install <path>` (a real wheel build, not editable),
then the project runs the three-line `from actlab import watch` loop and a Hugging Face Trainer
with `ActLabCallback` while importing its own `core`, opens the runs with the `actlab` command,
and finds the installed dashboard. The last test checks `pip install -e <clone>` too.

Third-party packages: by default the new venv sees the packages of the venv running this test
(a read-only folder of links to them, added with a .pth file; ActLab itself and pip/setuptools
are left out), ActLab goes in with --no-deps, and `pip check` proves that what it declares is met.
A from-scratch install (torch==2.13.0 first, as the Makefile does, then `pip install <path>` with
its dependencies) took 22 minutes on the loaded 2-core box, so it runs only with
ACTLAB_USER_PROJECT_INSTALL=full (what `make test` itself does for the dev venv proves that the
dependencies resolve).
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.user_project, pytest.mark.timeout(1800)]

# Never linked into the user's venv: ActLab must come from the wheel, and pip from the venv itself.
NOT_SHARED = ("actlab", "__editable__", "pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel",
              "distutils-precedence", "__pycache__")

USER_CORE = '''"""The user's own package called core: nothing to do with ActLab."""
OWNER = "the user's project"


def double(x):
    return 2 * x
'''

LOOP = '''
import sys

import core                     # the user's own packages, imported beside ActLab in one process
import dashboard
import torch
from torch import nn

import actlab
from actlab import watch

assert core.OWNER == "the user's project" and core.double(21) == 42, core.__file__
assert dashboard.OWNER == "the user's project", dashboard.__file__
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with watch(model, run=sys.argv[1], log_every=5) as w:
    for step in range(20):
        x = torch.randn(16, 10)
        loss = model(x).pow(2).mean()
        loss.backward(); opt.step(); opt.zero_grad()
        w.step(loss=loss)
print(json.dumps({"core": core.__file__, "dashboard": dashboard.__file__, "actlab": actlab.__file__}))
'''

TRAINER = '''
import core
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from actlab import ActLabCallback

assert core.OWNER == "the user's project", core.__file__
model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64, num_labels=2))
data = [{"input_ids": torch.randint(1, 100, (16,)), "attention_mask": torch.ones(16, dtype=torch.long),
         "labels": torch.tensor(i % 2)} for i in range(32)]
args = TrainingArguments("out/tiny-bert", max_steps=4, per_device_train_batch_size=8, logging_steps=2,
                         report_to="none", save_strategy="no", use_cpu=True)
Trainer(model=model, args=args, train_dataset=data, callbacks=[ActLabCallback(run="user-bert")]).train()
print(json.dumps({"core": core.__file__}))
'''

WHERE = '''
import importlib.util, json
from pathlib import Path
import actlab
from actlab.cli.dashboard import app_path
spec = importlib.util.find_spec("actlab.dashboard")
print(json.dumps({"actlab": actlab.__file__, "app": str(app_path()), "app_exists": app_path().is_file()}))
'''


class Project:
    """The throwaway project: its folder, its venv's python, and a runner that explains failures."""

    def __init__(self, root: Path):
        self.root, self.dir, self.clone = root, root / "project", root / "clone"
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
                    and not k.startswith("ACTLAB_")}
        self.env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                        PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        self.timings: dict[str, float] = {}

    def run(self, what: str, args: list, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
        t0 = time.time()
        r = subprocess.run([str(a) for a in args], cwd=cwd or self.dir, env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        self.timings[what] = round(time.time() - t0, 1)
        assert r.returncode == 0, (f"user project: {what} failed (exit {r.returncode}).\n$ {' '.join(map(str, args))}\n"
                                   f"--- stdout ---\n{r.stdout[-3000:]}\n--- stderr ---\n{r.stderr[-5000:]}")
        return r

    def script(self, what: str, name: str, code: str, *args: str) -> dict:
        (self.dir / name).write_text("import json\n" + textwrap.dedent(code))
        out = self.run(what, [self.python, name, *args]).stdout.strip().splitlines()
        assert out, f"user project: {name} printed nothing"
        return json.loads(out[-1])


def _copy_clone(dst: Path):
    """The working tree's tracked and not-ignored files, as a fresh clone would have them (building
    the wheel writes build/ into the source folder: that stays out of the repository)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _share_runner_packages(project: Project) -> Path:
    """A folder of links to this venv's third-party packages, seen by the new venv through a .pth."""
    site = Path(sysconfig.get_paths()["purelib"])
    shared = project.root / "shared-site-packages"
    shared.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(NOT_SHARED) or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
    purelib = project.run("venv site-packages", [project.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(purelib.stdout.strip()) / "zz_shared_with_the_test_runner.pth").write_text(str(shared) + "\n")
    return shared


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_project")
    assert not root.resolve().is_relative_to(ROOT), "the user project must live outside the repository"
    p = Project(root)
    for pkg in ("core", "dashboard"):
        (p.dir / pkg).mkdir(parents=True)
        (p.dir / pkg / "__init__.py").write_text(USER_CORE)
    _copy_clone(p.clone)
    # --upgrade-deps: a current pip and setuptools (torch itself asks for setuptools >= 77).
    p.run("python -m venv --upgrade-deps", [sys.executable, "-m", "venv", "--upgrade-deps", p.venv], cwd=root)
    if os.environ.get("ACTLAB_USER_PROJECT_INSTALL") == "full":
        p.run("pip install torch==2.13.0", [p.python, "-m", "pip", "install", "-q", "torch==2.13.0"], timeout=3000)
        p.run("pip install <clone>", [p.python, "-m", "pip", "install", "-q", p.clone], timeout=3000)
    else:
        _share_runner_packages(p)
        p.run("pip install --no-deps <clone>", [p.python, "-m", "pip", "install", "-q", "--no-deps", p.clone])
        p.run("pip check", [p.python, "-m", "pip", "check"])
    yield p
    print(f"\nuser project timings (s): {p.timings}")


def test_plain_loop_with_the_users_own_core_package(project):
    where = project.script("the three-line watch loop", "train_loop.py", LOOP, "user-loop")
    assert Path(where["core"]) == project.dir / "core" / "__init__.py", where
    assert Path(where["dashboard"]) == project.dir / "dashboard" / "__init__.py", where
    # ActLab came from the wheel in the venv, not from the clone or the repository.
    assert Path(where["actlab"]).is_relative_to(project.venv), f"actlab imported from {where['actlab']}, not the venv"


def test_hugging_face_trainer_with_the_callback(project):
    where = project.script("a Trainer with ActLabCallback", "train_trainer.py", TRAINER)
    assert Path(where["core"]) == project.dir / "core" / "__init__.py", where


def test_the_actlab_command_opens_the_runs(project):
    listed = json.loads(project.run("actlab runs list --json", ["actlab", "runs", "list", "--json"]).stdout)
    assert {r["name"]: r["status"] for r in listed} == {"user-loop": "finished", "user-bert": "finished"}, listed
    loop = json.loads(project.run("actlab runs show user-loop --json",
                                  ["actlab", "runs", "show", "user-loop", "--json"]).stdout)
    assert {"dead/1", "dormant/1", "loss/train"} <= set(loop["last"]), sorted(loop["last"])
    assert 0.0 <= loop["last"]["dead/1"] <= 1.0
    bert = json.loads(project.run("actlab runs show user-bert --json",
                                  ["actlab", "runs", "show", "user-bert", "--json"]).stdout)
    ffn = "bert.encoder.layer.1.intermediate.intermediate_act_fn"
    assert f"dormant/{ffn}" in bert["last"] and "loss/train" in bert["last"], sorted(bert["last"])
    text = project.run("actlab runs list", ["actlab", "runs", "list"]).stdout
    assert "user-loop" in text and "user-bert" in text and "finished" in text, text


def test_the_installed_dashboard(project):
    help_text = project.run("actlab dashboard --help", ["actlab", "dashboard", "--help"]).stdout
    assert "--port" in help_text and "--address" in help_text, help_text
    where = project.script("where the installed app is", "where.py", WHERE)
    assert where["app_exists"], f"the installed copy has no dashboard app at {where['app']}"
    assert Path(where["app"]).is_relative_to(project.venv), where


def test_editable_install_from_a_clone(project):
    """The developers' set-up: `pip install -e .` in a clone; runs last, it replaces the wheel."""
    project.run("pip install --no-deps -e <clone>", [project.python, "-m", "pip", "install", "-q", "--no-deps", "-e", "."],
                cwd=project.clone)
    where = project.script("the loop against the editable install", "train_loop.py", LOOP, "user-loop-editable")
    assert Path(where["actlab"]) == project.clone / "core" / "__init__.py", where
    assert Path(where["core"]) == project.dir / "core" / "__init__.py", where
