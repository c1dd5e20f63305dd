"""The Python front door (`vswin_cli.load` -> `Tagger`): the same records as `vswin tag`, cheap to import, no cycles."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_tag_cli import make_video, run

import vswin_cli
from conftest import REPO, save_tiny_model
from vswin_cli.errors import UsageError

OPTIONS = {"window": 1.0, "stride": 0.5, "views": "2x1", "top_k": 3, "merge": True}  # overlapping windows, 2 clips


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api-model")
    args = save_tiny_model(folder)
    return folder, args


@pytest.fixture(scope="module")
def tagger(model_files):
    folder, _ = model_files
    # the runtime the CLI runs get (conftest's VSWIN_RUNTIME is set per test, after this module fixture)
    return vswin_cli.load(weights=folder / "tiny.pth", arch=str(folder / "tiny.json"), labels=folder / "labels.txt",
                          runtime="torch")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-clips")
    make_video(root / "a.mp4", 60, seed=1)
    make_video(root / "b" / "c.mp4", 35, fps=20, seed=2)
    (root / "broken.mp4").write_bytes(b"\x00" * 64)  # unreadable: an error record
    make_video(root / "d.mp4", 10, seed=3)  # shorter than a clip: indices wrap
    return root


def test_api_records_equal_the_cli_json_lines(model_files, tagger, clips, tmp_path):
    _, args = model_files
    out = tmp_path / "tags.jsonl"
    result = run([str(clips), *args, "--window", "1", "--stride", "0.5", "--views", "2x1", "--top-k", "3", "--merge",
                  "-o", str(out)])
    assert result.exit_code == 1, result.stderr  # the broken file
    lines = [json.loads(line) for line in out.read_text().splitlines()]

    results = list(tagger.tag(clips, crop_size=32, **OPTIONS))
    assert [r.video for r in results] == ["a.mp4", "b/c.mp4", "broken.mp4", "d.mp4"]
    records = [record for result in results for record in result.records()]
    assert lines[1:] == records
    assert any(r["record"] == "event" for r in records) and any(r["record"] == "error" for r in records)
    engine = tagger.engine(vswin_cli.TagSettings(crop_size=32, **OPTIONS))
    assert lines[0] == tagger.run_record(vswin_cli.TagSettings(crop_size=32, **OPTIONS), engine)
    assert lines[0]["sha256"] == __import__("hashlib").sha256((model_files[0] / "tiny.pth").read_bytes()).hexdigest()


def test_results_expose_segments_times_and_tags(tagger, clips):
    [good, bad] = tagger.tag([clips / "a.mp4", clips / "broken.mp4"], crop_size=32, window=1.0)
    assert good.error is None and bad.error is not None and bad.top == ()
    spans = [(s.start, s.end) for s in good.segments]
    assert len(spans) == 3 and spans[0] == (0.0, 1.0) and spans[-1][1] == good.summary.duration == 2.4
    assert good.top[0].label in tagger.labels and good.top == good.summary.top
    assert good.segments[0].top[0].score >= good.segments[0].top[-1].score


def test_segments_arrive_before_their_video_is_done(tagger, clips):
    items = list(tagger.segments(clips / "a.mp4", crop_size=32, window=1.0))
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["ScoredSegment"] * 3 + ["VideoResult"]
    assert items[0].probs.shape == (len(tagger.labels),) and abs(float(items[0].probs.sum()) - 1) < 1e-5


def test_frames_in_memory_tag_like_the_file(tagger, clips):
    from vswin_cli.decode import open_video

    with open_video(clips / "a.mp4") as reader:
        frames, fps = reader.read(np.arange(reader.num_frames)), reader.fps
    [from_file] = tagger.tag(clips / "a.mp4", crop_size=32, window=1.0)
    [from_memory] = tagger.tag(vswin_cli.Frames(frames, fps, name=from_file.video), crop_size=32, window=1.0)
    assert from_memory == from_file


def test_classify_is_the_whole_video_with_the_paper_views(tagger, clips):
    scores = list(tagger.classify([clips / "a.mp4", clips / "broken.mp4"], crop_size=32))
    assert scores[0].probs.dtype == np.float32 and scores[0].probs.shape == (len(tagger.labels),)
    assert scores[1].probs is None and scores[1].error
    [whole] = tagger.tag(clips / "a.mp4", crop_size=32, window=math.inf, views="paper", top_k=1)
    assert len(whole.segments) == 1 and whole.top[0].index == int(np.argmax(scores[0].probs))
    assert whole.top[0].score == pytest.approx(float(scores[0].probs.max()), abs=1e-6)


def test_embeddings_per_segment(tagger, clips):
    [result] = tagger.tag(clips / "a.mp4", crop_size=32, window=1.0, features=True, top_k=0)
    embeddings = np.array([s.features for s in result.segments])
    assert embeddings.shape == (3, tagger.model.config.head_in_channels) and np.isfinite(embeddings).all()


@pytest.mark.parametrize("options,message", [
    ({"views": "4x2"}, "crops 1 or 3"), ({"window": 0}, "--window"), ({"threshold": 2.0}, "--threshold"),
    ({"crops": 2}, "--crops 2"), ({"backend": "ffmpeg"}, "--backend"), ({"batch_views": 0}, "--batch-views"),
])
def test_bad_settings_are_refused_once_up_front(options, message):
    with pytest.raises(UsageError, match=message):
        vswin_cli.TagSettings(**options)


def test_bad_frames_are_refused():
    with pytest.raises(Exception, match="uint8"):
        vswin_cli.Frames(np.zeros((4, 8, 8, 3), np.float32), 25.0)


def test_import_is_cheap():
    """`import vswin_cli` (and the names it offers, until used) loads no torch, typer or rich."""
    code = "import vswin_cli; vswin_cli.__version__"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "typer", "rich", "click", "av"}, sorted(imported & {"torch", "typer", "rich"})


def test_no_import_cycle_between_our_modules():
    """Module-level imports among vswin_cli and models form no cycle (lazy imports inside functions aside)."""
    graph: dict[str, set[str]] = {}
    files = [*(REPO / "vswin_cli").rglob("*.py"), *(REPO / "models").rglob("*.py")]
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in files}
    for path in files:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:  # top level only
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from models import kernels` imports the module models.kernels
                deps.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
        graph[name] = {d for d in deps if d.split(".")[0] in ("vswin_cli", "models") and d != name}

    def visit(node, stack):
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in graph:
        visit(module, [])


def test_cli_and_api_share_one_settings_check():
    """The tag command builds a `TagSettings` (no second validation of the same values in the command)."""
    source = (REPO / "vswin_cli" / "commands" / "tag.py").read_text()
    assert "TagSettings(" in source and "parse_views" not in source and "for_views" not in source


def test_the_readme_python_example_runs(model_files, clips, capsys):
    """The README's front-door block, with the tiny model in place of the zoo one and the test clips as clips/."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "vswin_cli.load(" in b)
    folder, _ = model_files
    tiny = f'weights={str(folder / "tiny.pth")!r}, arch={str(folder / "tiny.json")!r}, labels={str(folder / "labels.txt")!r}'
    code = block.replace('vswin_cli.load("swin-t-k400")', f"vswin_cli.load({tiny})")
    code = code.replace('"clips/"', repr(str(clips))).replace('views="fast"', 'views="fast", crop_size=32')
    assert code != block
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "broken.mp4 failed:" in out and re.search(r"^a\.mp4 \S", out, flags=re.M) and " s  " in out


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_every_format_carries_the_run_record_and_the_report_shows_it(model_files, clips, tmp_path, fmt):
    """Provenance in each format (read back by `results.read_run`), the same in all, and in the report's header."""
    from vswin_cli.report import write_report
    from vswin_cli.results import read_run

    _, args = model_files
    out = tmp_path / f"tags.{fmt}"
    result = run([str(clips / "a.mp4"), *args, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    record = read_run(out)
    assert record["record"] == "run" and record["arch"] == "custom" and record["num_classes"] == 5
    assert record["precision"] in ("fp32", "bf16") and record["runtime"] and len(record["sha256"]) == 64
    again = tmp_path / f"again.{fmt}"
    assert run([str(clips / "a.mp4"), *args, "-o", str(again)]).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # no clock time, no host name: a repeated run, the same bytes
    summary = write_report(out, tmp_path / "r.html", video_root=clips)
    page = summary.path.read_text()
    assert f"made by vswin {record['vswin']}" in page and record["sha256"][:12] in page


def test_cpu_scores_do_not_depend_on_batching_or_worker_timing(tagger, clips):
    """fp32 matrix products round differently with the number of rows: on the CPU each view has a
    forward of its own, so the bytes are the same whatever --batch-views and the decode workers do."""
    options = {**OPTIONS, "crop_size": 32}
    one = [r.records() for r in tagger.tag(clips, batch_views=1, workers=0, **options)]
    many = [r.records() for r in tagger.tag(clips, batch_views=16, workers=2, **options)]
    assert one == many
