"""The scripted newcomer (issue 11): a clean clone, a new virtual environment, the README's install
command, then the main job offline, which must end with the documented `Error:`/`Hint:` and exit 1.

The environment is `python -m venv --system-site-packages`: PyTorch (hundreds of MB) and the other
dependencies already installed are reused, so the run needs no internet; pip still builds and installs
the clone itself (build isolation included: setuptools comes from the configured package index or
wheel folder, and the test skips, saying so, where pip can reach none).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from test_tag_cli import make_video

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

    # The main job, offline, on a generated video: the README's error (and no traceback).
    make_video(tmp_path / "clips" / "a.mp4", 16)
    words = main_job.split()
    model = words[words.index("--model") + 1]
    out = run([str(bin_dir / "vswin"), *words[1:]], cwd=tmp_path, env={**env, "VSWIN_OFFLINE": "1"}, timeout=600)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert out.stderr.startswith("Error: offline mode") and "Traceback" not in out.stderr
    hint = next(line for line in out.stderr.splitlines() if line.startswith("Hint: "))
    assert f"`vswin fetch {model} --from FOLDER`" in hint
    out = run([str(bin_dir / "vswin"), "tag", "clips", "--model", "swin-t-k400"], cwd=tmp_path,
              env={**env, "VSWIN_OFFLINE": "1"}, timeout=600)
    assert out.returncode == 1 and "`vswin fetch swin-t-k400 --from FOLDER`" in out.stderr
