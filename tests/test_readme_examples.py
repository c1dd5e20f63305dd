"""Every shell example in README.md is checked against the tool, so the README cannot drift from it.

All `vswin ...` lines of the ```bash blocks (also after `torchrun ... -m vswin_cli`, in pipes and after
`&&`) go through the real command-line parser: the command and every option must exist and every value
must parse. Those that need no network, GPU or data set are run for real: `--help`, `--version`,
`models`, `env`, `cache ...`, `fetch --verify`, and the main job offline, which must give the error the
README documents (`VSWIN_OFFLINE=1 vswin tag clips/ --model swin-b-k600`).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from conftest import REPO
from vswin_cli import zoo
from vswin_cli.app import app

README = (REPO / "README.md").read_text(encoding="utf-8")
ROOT = typer.main.get_command(app)
SEPARATORS = {"&&", "||", "|", ";"}


def _bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()  # a trailing comment
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _vswin_calls(line: str) -> list[tuple[dict, list[str]]]:
    """([env], [args after `vswin`]) of each vswin call in a shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    segments, current = [], []
    for token in lexer:
        if token in SEPARATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    calls = []
    for tokens in segments:
        env = {}
        while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
            key, _, value = tokens.pop(0).partition("=")
            env[key] = value
        if tokens[:1] == ["vswin"]:
            args = tokens[1:]
        elif tokens[:1] == ["torchrun"] and "vswin_cli" in tokens:
            args = tokens[tokens.index("vswin_cli") + 1:]
        else:
            continue
        if ">" in args:  # a redirection: `> tags.jsonl`
            args = args[:args.index(">")]
        calls.append((env, args))
    return calls


CALLS = [(line, env, args) for line in _bash_lines() for env, args in _vswin_calls(line)]


def _command(args: list[str]):
    command, path = ROOT, []
    while args and hasattr(command, "commands") and not args[0].startswith("-"):
        assert args[0] in command.commands, f"no command `vswin {' '.join(path + [args[0]])}`"
        command, path, args = command.commands[args[0]], path + [args[0]], args[1:]
    return command, path, args


def test_the_readme_has_examples_of_every_command():
    assert len(CALLS) >= 30
    shown = {" ".join(_command(args)[1]) for _, _, args in CALLS}
    assert {"tag", "eval", "train", "fetch", "models", "env", "cache list", "cache rm", "cache prune"} <= shown


@pytest.mark.parametrize("line, env, args", CALLS, ids=[" ".join(a)[:80] for _, _, a in CALLS])
def test_every_example_parses(line, env, args):
    command, path, rest = _command(list(args))
    if any("..." in token for token in rest):  # "vswin train ...same options... --resume": the options shown exist
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        unknown = [t for t in rest if t.startswith("-") and t not in options]
        assert not unknown, f"{line}: {unknown}"
        return
    if not path or "--help" in rest:  # `vswin --help` / `--version` exit from the parser: run below instead
        return
    try:
        ctx = command.make_context(" ".join(["vswin", *path]), list(rest))  # raises a UsageError on drift
    except Exception as err:
        # A path option that must exist (`--videos ./clips`): the option and its type are right; the example's
        # files are the reader's own.
        if type(err).__name__ == "BadParameter" and "does not exist" in str(err):
            return
        raise
    assert ctx.params is not None


def _runnable(args: list[str]) -> bool:
    _, path, rest = _command(list(args))
    return (not path or path[0] in ("models", "env", "cache") or (path == ["fetch"] and rest == ["--verify"]))


RUNNABLE = [(line, env, args) for line, env, args in CALLS if _runnable(args)]


@pytest.mark.parametrize("line, env, args", RUNNABLE, ids=[" ".join(a) or "vswin" for _, _, a in RUNNABLE])
def test_offline_examples_run(line, env, args, monkeypatch):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (line, result.output)
    assert "Traceback" not in result.output
    if args[:1] == ["models"]:  # every name of the README's zoo table is in the listing, and the reverse
        table = README.split("| name |")[1].split("\n\n")[0]
        readme_names = {name for row in table.splitlines() for name in re.findall(r"`(swin-[a-z0-9-]+)`", row.split("|")[1])}
        assert readme_names == set(zoo.PRETRAINED)
        assert all(name in result.stdout for name in zoo.PRETRAINED)
    if args == ["env", "--json"]:  # `vswin env --json | jq .torch`
        assert "version" in json.loads(result.stdout)["torch"]
    if args == ["--version"]:
        assert result.stdout.startswith("vswin ")


def test_the_main_job_offline_gives_the_documented_error(tmp_path, monkeypatch):
    from test_tag_cli import make_video

    line = next(line for line, env, args in CALLS if env.get("VSWIN_OFFLINE") == "1")
    env, args = _vswin_calls(line)[0]
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "clips" / "a.mp4", 8)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, args)
    model = args[args.index("--model") + 1]
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: offline mode") and "not in the cache" in result.stderr
    assert f"Hint: download {zoo.PRETRAINED[model].url}" in result.stderr
    assert f"`vswin fetch {model} --from FOLDER`" in result.stderr  # the README's own import command
    assert f"vswin fetch {model} --from" in README


@pytest.mark.slow
def test_the_video_input_python_example_runs(tmp_path, monkeypatch):
    """The README's `sample_test_views` block, on a generated clip.mp4: the shape it documents."""
    from test_tag_cli import make_video

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "sample_test_views" in b)
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "clip.mp4", 80, height=240, width=320)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
    documented = re.search(r"views\.shape\s+# \(([\d, ]+)\)", block).group(1)
    assert tuple(namespace["views"].shape) == tuple(int(n) for n in documented.split(","))
    assert len(namespace["frame_indices"].reshape(-1)) == 4 * 32


def test_the_main_jobs_inputs_are_in_a_clean_clone():
    """The README's first command tags files that `git clone` brings along (not the reader's own folder)."""
    import subprocess

    block = re.search(r"## Set-up in two commands.*?```bash\n(.*?)\n```", README, flags=re.S).group(1)
    _, args = next(call for call in _vswin_calls(block) if call[1][:1] == ["tag"])
    inputs = [a for a in args[1:args.index(next(a for a in args if a.startswith("-")))]]
    assert inputs, args
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", *inputs], capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    videos = [p for p in tracked.stdout.splitlines() if p.endswith((".mp4", ".mkv", ".webm", ".avi", ".mov"))]
    assert videos, f"{inputs}: no video tracked by git (a fresh clone would have nothing to tag)"
    licence = (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    assert all(Path(v).name in licence for v in videos if v.startswith("examples/"))
    assert "Licence" in licence and "commit" in licence


def _python_block(marker: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if marker in b)


def _replace(block: str, old: str, new: str) -> str:
    assert old in block, f"the README's example no longer has {old!r}: update this test with it"
    return block.replace(old, new)


def test_the_models_python_example_runs(tmp_path, capsys):
    """The README's `models` block with the tiny model's files in place of Swin-B's (same calls, small shapes)."""
    from conftest import save_tiny_model

    save_tiny_model(tmp_path)
    block = _python_block("load_checkpoint(model,")
    block = _replace(block, 'get_config("swin-b", num_classes=600)', f'get_config({str(tmp_path / "tiny.json")!r}, num_classes=5)')
    block = _replace(block, '"swin_base_patch244_window877_kinetics600_22k.pth"', repr(str(tmp_path / "tiny.pth")))
    block = _replace(block, "torch.randn(2, 3, 32, 224, 224)", "torch.randn(2, 3, 8, 32, 32)")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
    assert tuple(namespace["logits"].shape) == (2, 5)
    assert tuple(namespace["embedding"].shape) == (2, namespace["model"].config.num_features)
    assert not namespace["report"].missing_keys and capsys.readouterr().out.strip()  # every key loaded, summary printed


def test_the_report_and_annotate_python_example_runs(tmp_path, monkeypatch):
    """The README's report/annotate block on the results of a tiny-model run over clips/."""
    from conftest import save_tiny_model
    from test_tag_cli import make_video

    options = save_tiny_model(tmp_path / "model")
    make_video(tmp_path / "clips" / "a.mp4", 60)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["tag", "clips", *options, "--workers", "0", "-o", "tags.jsonl", "-q"])
    assert result.exit_code == 0, result.output
    namespace: dict = {}
    exec(compile(_python_block("write_report("), "README.md", "exec"), namespace)  # noqa: S102
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "a.mp4" in page and "<video" in page  # the clip was found under video_root: it gets a player
    assert [p.name for p in (tmp_path / "labelled").rglob("*.mp4")] == ["a.mp4"]
