"""Decode workers (`vswin_cli.segments`): how videos and their segments are dealt to the workers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_tag_cli import LABELS, make_video
from test_tag_inference import _tiny_model

import vswin_cli.segments as segments
from vswin_cli.inference import Engine, RunOptions
from vswin_cli.segments import DecodeOptions
from vswin_cli.inputs import find_videos
from vswin_cli.protocol import ClipSpec

SPEC = ClipSpec(num_clips=1, num_crops=1, crop_size=32)


def _as_worker(monkeypatch, stream, index: int, count: int) -> list:
    monkeypatch.setattr(segments, "get_worker_info", lambda: SimpleNamespace(id=index, num_workers=count))
    monkeypatch.setattr(segments.os, "nice", lambda n: 0)  # this process is not really a worker
    monkeypatch.setattr(segments.torch, "set_num_threads", lambda n: None)
    return [(item.video_pos, item.plan.segment.index) for item in stream if isinstance(item, segments.SegmentViews)]


def test_one_long_video_is_shared_by_every_worker(tmp_path, monkeypatch):
    videos = find_videos([str(make_video(tmp_path / "long.mp4", 600, height=24, width=32))])
    monkeypatch.setattr(segments, "MAX_FRAMES_PER_READ", 64)  # one segment per chunk
    stream = segments.VideoStream(videos, [0], SPEC, DecodeOptions(), {})
    parts = [_as_worker(monkeypatch, stream, i, 2) for i in range(2)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])  # both busy, nothing twice
    assert sorted(parts[0] + parts[1]) == [(0, i) for i in range(10)]  # 600 frames = 10 segments of 64 (the last moved back)


def test_as_many_videos_as_workers_are_dealt_whole(tmp_path, monkeypatch):
    videos = find_videos([str(make_video(tmp_path / f"{i}.mp4", 130, seed=i)) for i in range(2)])
    stream = segments.VideoStream(videos, [0, 1], SPEC, DecodeOptions(), {})
    parts = [_as_worker(monkeypatch, stream, i, 2) for i in range(2)]
    assert {pos for pos, _ in parts[0]} == {0} and {pos for pos, _ in parts[1]} == {1}


@pytest.mark.parametrize("device,env,expected", [("cpu", None, [19]), ("cpu", "5", [5]), ("cpu", "0", [0]),
                                                 ("cpu", "99", [19]), ("cpu", "x", [19]), ("cuda", None, [])])
def test_decode_workers_yield_the_cores_to_a_model_on_the_cpu(tmp_path, monkeypatch, device, env, expected):
    """On the CPU the decoders run below the model (os.nice, VSWIN_DECODE_NICE); feeding a GPU they do not."""
    if env is None:
        monkeypatch.delenv("VSWIN_DECODE_NICE", raising=False)
    else:
        monkeypatch.setenv("VSWIN_DECODE_NICE", env)
    videos = find_videos([str(make_video(tmp_path / "a.mp4", 70))])
    stream = segments.VideoStream(videos, [0], SPEC, DecodeOptions(lower_priority=device == "cpu"), {})
    calls = []
    monkeypatch.setattr(segments, "get_worker_info", lambda: SimpleNamespace(id=0, num_workers=1))
    monkeypatch.setattr(segments.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(segments.os, "nice", lambda n: calls.append(n) or n)
    items = list(stream)
    assert calls == expected and any(isinstance(i, segments.SegmentViews) for i in items)
    monkeypatch.setattr(segments, "get_worker_info", lambda: None)  # in the main process (--workers 0): never
    calls.clear()
    list(stream)
    assert calls == []


@pytest.mark.slow
def test_shared_decoding_gives_the_same_tags(tmp_path):
    videos = find_videos([str(make_video(tmp_path / "long.mp4", 600, height=24, width=32))])
    alone = list(Engine(_tiny_model(), LABELS, "tiny", SPEC, RunOptions(workers=0)).run(videos))
    shared = list(Engine(_tiny_model(), LABELS, "tiny", SPEC, RunOptions(workers=2)).run(videos))
    assert shared == alone and len(alone[0].segments) == 10
