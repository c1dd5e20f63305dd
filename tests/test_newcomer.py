"""The scripted newcomer (issues 11 and 22): a clean clone, a new virtual environment, the README's install
command, then the README's main job offline: first without weights (the documented `Error:`/`Hint:`, exit
1), then with the weights imported from a local file (`vswin fetch NAME --from FILE`, as the README says),
which must tag the example clip the clone holds. There are no real weights here, so the imported file is a
randomly initialised checkpoint in the official layout of the entry's architecture: the labels are
meaningless, the run (import, verification, decoding, model, writer) is the real one.

The environment is `python -m venv --system-site-packages`: PyTorch (hundreds of MB) and the other
dependencies already installed are reused, so the run needs no internet; pip still builds and installs
the clone itself (build isolation included: setuptools comes from the configured package index or
wheel folder, and the test skips, saying so, where pip can reach none).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text(encoding="utf-8")
NETWORK_TROUBLE = re.compile(r"Could not find a version|No matching distribution|NewConnectionError|"
                             r"Temporary failure in name resolution|Network is unreachable|ConnectTimeout", re.I)


def _setup_commands() -> tuple[list[str], str]:
    """The README's first command line, split at `&&`: (pip install commands, the vswin command)."""
    block = re.search(r"## Set-up in two commands.*?```bash\n(.*?)\n```", README, flags=re.S).group(1)
    steps = [step.strip() for step in block.split("&&")]
    return [s for s in steps if s.startswith("pip install")], next(s for s in steps if s.startswith("vswin "))


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def test_a_newcomer_follows_the_readme(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    branch = run(["git", "-C", str(REPO), "rev-parse", "--abbrev-ref", "HEAD"]).stdout.strip()
    clone = tmp_path / "vswin"
    out = run(["git", "clone", "-q", "--branch", branch, str(REPO), str(clone)], timeout=120)
    assert out.returncode == 0, out.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "VSWIN_HOME")}
    env.update(VSWIN_HOME=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = tmp_path / "venv"
    out = run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], timeout=300)
    assert out.returncode == 0, out.stderr
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    installs, main_job = _setup_commands()
    assert installs == ["pip install torch==2.13.0", "pip install -e ."]
    for command in installs:
        out = run([str(bin_dir / "pip"), *command.split()[1:], "-q"], cwd=clone, env=env, timeout=900)
        if out.returncode != 0 and NETWORK_TROUBLE.search(out.stdout + out.stderr):
            pytest.skip(f"`{command}` needs a package index this machine cannot reach: {out.stderr.strip()[-300:]}")
        assert out.returncode == 0, (command, out.stdout, out.stderr)

    # The clone's code runs, not the checkout's (or another editable install's).
    where = run([str(bin_dir / "python"), "-c", "import vswin_cli; print(vswin_cli.__file__)"], cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(clone)), where.stdout + where.stderr
    help_ = run([str(bin_dir / "vswin"), "--help"], cwd=tmp_path, env=env, timeout=300)
    assert help_.returncode == 0 and "tag" in help_.stdout and "env" in help_.stdout

    # The main job, offline and without weights: the README's error (and no traceback).
    words = main_job.split()
    model = words[words.index("--model") + 1]
    offline = {**env, "VSWIN_OFFLINE": "1"}
    out = run([str(bin_dir / "vswin"), *words[1:]], cwd=clone, env=offline, timeout=600)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert out.stderr.startswith("Error: offline mode") and "Traceback" not in out.stderr
    hint = next(line for line in out.stderr.splitlines() if line.startswith("Hint: "))
    assert f"`vswin fetch {model} --from FOLDER`" in hint

    # The weights from a local folder, as the README's offline section says, then the same main job.
    weights = _official_checkpoint(model, tmp_path / "downloads")
    out = run([str(bin_dir / "vswin"), "fetch", model, "--from", str(weights), "-q"], cwd=clone, env=offline, timeout=600)
    assert out.returncode == 0, (out.stdout, out.stderr)
    out = run([str(bin_dir / "vswin"), *words[1:]], cwd=clone, env=offline, timeout=1200)
    assert out.returncode == 0, (out.stdout, out.stderr)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    clips = {r["video"] for r in records if r["record"] in ("segment", "video")}
    inputs = words[words.index("tag") + 1:words.index("--model")]
    expected = {p.relative_to(clone / inputs[0]).as_posix() for p in (clone / inputs[0]).rglob("*.mp4")}
    assert clips == expected and expected, (clips, expected)
    assert [r["record"] for r in records].count("video") == len(expected)
    assert any(r["record"] == "segment" and r["top"] for r in records), records[:3]
    assert "Traceback" not in out.stderr


def _official_checkpoint(name: str, folder):
    """A folder holding `name`'s checkpoint file (official mmaction layout, random weights) and a label
    map with the right number of lines, under the file names `vswin fetch NAME --from FOLDER` expects."""
    import torch

    from models.convert import to_mmaction
    from models.swin3d import VideoSwin
    from vswin_cli import zoo

    entry = zoo.get_entry(name)
    torch.manual_seed(0)
    with torch.device("meta"):
        net = VideoSwin.from_config(zoo.entry_config(entry))
    net.to_empty(device="cpu")
    state = {k: torch.randn_like(v) * 0.02 if v.is_floating_point() else torch.zeros_like(v)
             for k, v in net.state_dict().items()}  # no real weights here: any values of the right layout
    folder.mkdir(parents=True)
    torch.save({"meta": {}, "state_dict": to_mmaction(state)}, folder / entry.filename)
    label_map = zoo.LABEL_MAPS[entry.labels]
    (folder / label_map.filename).write_text("".join(f"class {i}\n" for i in range(label_map.num_classes)))
    return folder
