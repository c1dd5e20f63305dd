"""Issue 11, "the first ten minutes": one test (at least) per problem a newcomer met, each of which failed
before its fix.

1. the README's test command (see test_readme_examples.py and test_newcomer.py), 2. tracebacks,
3. advice that does not work (test_hints.py), 4. start-up time, 5. checks after the expensive part,
6. -q not quiet and wrapped `failed:` lines, 7. files only their owner can read, 8. format vs
extension, 9. help (<bool>, -h, completion, -v, train -q), 10. progress.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO
from models import VideoSwin, save_checkpoint
from models.convert import to_mmaction
from test_tag_cli import LABELS, TINY, make_video
from vswin_cli.app import app

HEAVY = {"torch", "av", "decord"}


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def assert_error(result, code: int, *words: str) -> None:
    """An `Error:` line, a `Hint:` line, the exit status, and never a traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stderr.startswith("Error: ") and "\nHint: " in result.stderr, result.stderr
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = VideoSwin(**TINY)
    (folder / "tiny.json").write_text(json.dumps(TINY))
    torch.save({"state_dict": to_mmaction(model.state_dict())}, folder / "tiny.pth")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    video = make_video(folder / "videos" / "a.mp4", 40)
    options = ["--weights", folder / "tiny.pth", "--arch", folder / "tiny.json", "--labels", folder / "labels.txt",
               "--crop-size", "32", "--workers", "0"]
    return video, options


@pytest.fixture
def offline(monkeypatch):
    """A zoo model is named but never in the cache: whatever is checked after it never shows."""
    monkeypatch.setenv("VSWIN_OFFLINE", "1")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# --- 2. tracebacks: device, paths --------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["tag", "eval", "train"])
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:7"])
def test_a_device_this_machine_lacks_is_a_usage_error_before_the_model(command, device, offline, tmp_path):
    args = {
        "tag": ["tag", tmp_path / "a.mp4", "-m", "swin-t-k400"],
        "eval": ["eval", "--dataset", tmp_path / "list.txt", "-m", "swin-t-k400"],
        "train": ["train", "--train-list", tmp_path / "list.txt", "--out-dir", tmp_path / "run", "-m", "swin-t-k400"],
    }[command]
    (tmp_path / "a.mp4").write_bytes(b"")  # the inputs exist: the device is the first thing wrong
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    result = invoke(*args, "--device", device)
    assert_error(result, 2, f"--device {device}" if device != "gpu" else "'gpu'")  # not the offline error


def test_an_output_in_an_unwritable_place_is_an_error_not_a_traceback(tiny):
    video, options = tiny
    assert_error(invoke("tag", video, *options, "-o", "/proc/x.jsonl"), 2, "/proc/x.jsonl", "does not accept new files")


def test_a_missing_output_folder_is_reported_before_the_model(offline, tmp_path):
    make_video(tmp_path / "a.mp4", 8)
    assert_error(invoke("tag", tmp_path, "-m", "swin-t-k400", "-o", tmp_path / "no" / "x.jsonl"), 2, "does not exist")


def test_an_unwritable_output_folder_is_reported_before_the_model(offline, tmp_path):
    make_video(tmp_path / "a.mp4", 8)
    assert_error(invoke("tag", tmp_path, "-m", "swin-t-k400", "-o", "/proc/x.jsonl"), 2, "/proc/x.jsonl")


# --- 4. start-up without torch or PyAV ---------------------------------------------------------------------

STARTUP = [["--help"], ["--version"], ["tag", "--no-such-option"], ["models"], ["models", "--json"], ["cache", "list"],
           ["fetch", "--help"], ["train", "-h"], ["env", "--help"], ["no-such-command"]]


def _heavy_imports(args: list[str]) -> tuple[int, list[str]]:
    code = (
        "import sys\n"
        f"sys.argv = ['vswin', *{args!r}]\n"
        "from vswin_cli.app import main\n"
        "try:\n    main()\n    status = 0\nexcept SystemExit as exit_:\n    status = exit_.code or 0\n"
        f"print('\\nMODULES', status, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    line = out.stdout.rsplit("MODULES", 1)[1].split(maxsplit=1)
    return int(line[0]), eval(line[1])  # noqa: S307 (our own repr of a list of str)


@pytest.mark.parametrize("args", STARTUP, ids=" ".join)
def test_help_version_usage_errors_and_models_import_neither_torch_nor_av(args):
    status, modules = _heavy_imports(args)
    assert status in (0, 2)
    assert modules == []


def test_tag_without_videos_is_a_usage_error_without_torch():
    assert _heavy_imports(["tag"]) == (2, [])


# --- 5. checks before the expensive part ---------------------------------------------------------------------


def test_a_missing_input_folder_is_reported_before_the_model(offline, tmp_path):
    result = invoke("tag", tmp_path / "no-such-folder", "-m", "swin-t-k400")
    assert result.exit_code != 0 and "no-such-folder" in result.stderr and "offline" not in result.stderr


def test_an_empty_folder_is_reported_before_the_model(offline, tmp_path):
    assert_error(invoke("tag", tmp_path, "-m", "swin-t-k400"), 1, "no video")  # not the offline error


# --- 6. failed: lines stay whole ----------------------------------------------------------------------------


def test_failed_lines_are_never_wrapped_when_stderr_is_not_a_terminal(tiny, tmp_path):
    _, options = tiny
    broken = tmp_path / ("a-long-folder-name-" * 4) / "not a video with a long name.mp4"
    broken.parent.mkdir()
    broken.write_text("not a video")
    result = invoke("tag", broken, *options)
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and str(broken) in failed[0] and len(failed[0]) > 100


# --- 7. files as readable as the umask says ---------------------------------------------------------------


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_tag_and_eval_outputs_are_0644_under_umask_022(tiny, tmp_path, umask_022):
    video, options = tiny
    out = tmp_path / "tags.jsonl"
    assert invoke("tag", video, *options, "-o", out, "-q").exit_code == 0
    (tmp_path / "list.txt").write_text(f"{video} 1\n")
    metrics, preds = tmp_path / "m.json", tmp_path / "p.jsonl"
    result = invoke("eval", "--dataset", tmp_path / "list.txt", "--data-root", "/", *options, "--views", "1x1",
                    "-o", metrics, "--predictions", preds, "-q")
    assert result.exit_code == 0, result.output
    for path in (out, metrics, preds, tmp_path / "m.per_class.csv"):
        assert _mode(path) == 0o644, path


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """A one-epoch `vswin train -q` of a tiny model under umask 022: (its folder, the CLI result)."""
    from test_train_data import make_motion_dataset

    root = tmp_path_factory.mktemp("train")
    make_motion_dataset(root, {"train": 1}, seed=0)
    (root / "tiny.json").write_text(json.dumps({**TINY, "num_classes": 4}))
    old = os.umask(0o022)
    try:
        result = invoke("train", "--train-list", root / "train.txt", "--labels", root / "labels.txt",
                        "--arch", root / "tiny.json", "--epochs", "1", "--batch-size", "4", "--clip-len", "4",
                        "--crop-size", "16", "--workers", "0", "--out-dir", root / "run", "-q")
    finally:
        os.umask(old)
    return root / "run", result


def test_train_q_is_quiet_and_its_metrics_are_0644(train_run):
    run, result = train_run
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    for name in ("metrics.jsonl", "metrics.csv"):
        assert _mode(run / name) == 0o644, name


def test_train_checkpoints_and_save_checkpoint_are_0644(train_run, tmp_path, umask_022):
    run, _ = train_run
    for name in ("epoch_001.pt", "last.pt", "best.pt"):
        assert _mode(run / name) == 0o644, name
    assert _mode(save_checkpoint(tmp_path / "x.pt", VideoSwin(**TINY), LABELS)) == 0o644


def test_the_umask_is_honoured_not_replaced(tmp_path):
    from vswin_cli.files import write_text_atomic

    old = os.umask(0o077)
    try:
        write_text_atomic(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.json") == 0o600


# --- 8. format vs extension ---------------------------------------------------------------------------------


def test_the_output_extension_picks_the_format(tiny, tmp_path):
    video, options = tiny
    assert invoke("tag", video, *options, "-o", tmp_path / "out.csv", "-q").exit_code == 0
    assert (tmp_path / "out.csv").read_text().startswith("record,video,segment,")
    assert invoke("tag", video, *options, "-o", tmp_path / "out.tsv", "-q").exit_code == 0
    assert (tmp_path / "out.tsv").read_text().startswith("record\tvideo\t")


def test_a_format_that_contradicts_the_extension_is_a_usage_error(offline, tmp_path):
    assert_error(invoke("tag", tmp_path / "a.mp4", "-m", "swin-t-k400", "-o", tmp_path / "x.csv", "-f", "json"), 2, ".csv")


def test_resume_is_refused_where_it_cannot_work(offline, tmp_path):
    assert_error(invoke("tag", tmp_path / "a.mp4", "-m", "swin-t-k400", "-o", tmp_path / "x.json", "--resume"), 2, "--resume")


# --- 9. help --------------------------------------------------------------------------------------------------


def _commands(group=None, prefix=()):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


COMMANDS = [path for path, command in _commands() if not hasattr(command, "commands")]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_h_and_q_and_its_booleans_are_flags(path):
    command = dict(_commands())[path]
    options = {opt for param in command.params for opt in param.opts}
    assert "-q" in options and "--quiet" in options, f"vswin {' '.join(path)} has no -q/--quiet"
    for param in command.params:
        if isinstance(param.default, bool):
            assert param.is_flag, f"vswin {' '.join(path)} {param.opts[0]} takes a value"
    result = invoke(*path, "-h")
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("path", [("tag",), ("train",)], ids=" ".join)
def test_v_where_it_makes_sense(path):
    options = {opt for param in dict(_commands())[path].params for opt in param.opts}
    assert {"-v", "--verbose"} <= options


def test_shell_completion_is_offered():
    assert "--install-completion" in invoke("--help").output


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "vswin")
def test_help_shows_no_bool_metavar(path):
    output = invoke(*path, "--help", terminal_width=200).output
    assert "<bool>" not in output and "BOOLEAN" not in output


# --- 10. progress (train; tag's is tested in test_tag_cli) ------------------------------------------------


def test_train_step_progress_plain_lines(capsys):
    from vswin_cli.progress import StepProgress

    progress = StepProgress(epochs=3, style="plain", every_s=0.0)
    progress.start_epoch(2, num_steps=4)
    for step, loss in enumerate([1.0, 3.0], start=1):
        progress.on_step(step, 4, torch.tensor(loss), 8)
    progress.end_epoch()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("epoch 2/3: step 1/4, loss 1.0000, ") and " clips/s, ETA " in lines[0]
    assert lines[1].startswith("epoch 2/3: step 2/4, loss 2.0000, ")  # the epoch's mean loss so far


def test_train_step_progress_throttles_plain_lines_but_ends_with_the_last_step(capsys):
    from vswin_cli.progress import StepProgress

    progress = StepProgress(epochs=1, style="plain", every_s=3600)
    progress.start_epoch(1, num_steps=3)
    for step in (1, 2, 3):
        progress.on_step(step, 3, torch.tensor(0.5), 2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1: step 3/3, loss 0.5000")


def test_train_step_progress_tqdm_for_notebooks(capsys):
    from vswin_cli.progress import StepProgress

    progress = StepProgress(epochs=2, style="tqdm")
    progress.start_epoch(1, num_steps=2)
    progress.on_step(1, 2, torch.tensor(0.25), 4)
    progress.on_step(2, 2, torch.tensor(0.25), 4)
    meter = str(progress.bar)
    assert meter.startswith("epoch 1/2:") and "2/2" in meter and "loss=0.2500" in meter
    progress.end_epoch()
    assert progress.bar is None and "epoch 1/2" in capsys.readouterr().err  # on stderr, never stdout


def test_train_default_workers_fit_the_machine(monkeypatch):
    import typer.main

    from vswin_cli import train as train_module

    for cores, expected in ((1, 1), (2, 2), (64, 4)):
        monkeypatch.setattr(train_module.os, "cpu_count", lambda cores=cores: cores)
        assert train_module.default_train_workers() == expected
    workers = next(p for p in typer.main.get_command(app).commands["train"].params if p.name == "workers")
    assert workers.default is None and train_module.TrainConfig.__dataclass_fields__["workers"].default is None


@pytest.mark.slow
def test_train_shows_steps_and_warns_about_workers_once(tmp_path):
    """A CLI run (stderr not a terminal): step lines with loss, rate and ETA; PyTorch's DataLoader warning
    about too many workers never appears (ours, once, instead)."""
    from test_train_data import make_motion_dataset

    make_motion_dataset(tmp_path, {"train": 1}, seed=0)  # 4 videos: 2 steps of 2
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "num_classes": 4}))
    workers = (os.cpu_count() or 1) + 1
    result = invoke("train", "--train-list", tmp_path / "train.txt", "--labels", tmp_path / "labels.txt",
                    "--arch", tmp_path / "tiny.json", "--epochs", "2", "--batch-size", "2", "--clip-len", "4",
                    "--crop-size", "16", "--workers", str(workers), "--out-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "epoch 1/2: step 2/2, loss " in err and "epoch 2/2: step 2/2, loss " in err and "ETA" in err
    assert "This DataLoader will create" not in err
    assert err.count(f"{workers} decoding workers") == 1


# --- also seen: fetch --from with no checkpoint --------------------------------------------------------------


def test_fetch_from_a_folder_without_the_checkpoint_exits_1(tmp_path):
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / "label_map_k400.txt").write_text("".join(f"class {i}\n" for i in range(400)))
    result = invoke("fetch", "swin-t-k400", "--from", folder)
    assert_error(result, 1, "swin_tiny_patch244_window877_kinetics400_1k.pth", "still not in the cache")
    assert "label_map_k400.txt" in result.stdout  # what could be imported was
