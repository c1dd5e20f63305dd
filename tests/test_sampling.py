"""Samplers and sliding-window segments: spec examples, golden indices, properties over random lengths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_path
from vswin_cli.sampling import (
    kinetics_test_indices,
    plan_segments,
    plan_segments_by_frames,
    uniform_test_indices,
    video_end_time,
)


def test_kinetics_spec_examples():
    assert kinetics_test_indices(280)[:, 0].tolist() == [27, 81, 135, 189]  # avg 54.25
    short = kinetics_test_indices(20)
    assert short.shape == (4, 32)
    assert short[0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18] * 3 + [0, 2]
    assert (short == short[0]).all()  # every clip starts at 0
    assert kinetics_test_indices(64)[:, 0].tolist() == [0, 0, 0, 0]  # avg 0.25
    assert kinetics_test_indices(1).tolist() == [[0] * 32] * 4


def test_uniform_spec_examples():
    assert uniform_test_indices(280)[0, :5].tolist() == [4, 13, 21, 30, 39]
    assert uniform_test_indices(20)[0, :6].tolist() == [0, 1, 1, 2, 2, 3]
    assert uniform_test_indices(1).tolist() == [[0] * 32]


def test_samplers_reject_empty_videos():
    with pytest.raises(ValueError):
        kinetics_test_indices(0)
    with pytest.raises(ValueError):
        uniform_test_indices(0)


def test_golden_frame_indices_of_every_fixture():
    """The sampled indices of every record the official pipeline produced, from its frame count alone."""
    index = json.loads(shared_path("fixtures", "pipeline", "index.json").read_text())
    checked = 0
    for entry in index["videos"].values():
        for config, outcome in entry["configs"].items():
            if outcome["status"] != "ok":
                continue
            record = json.loads(shared_path("fixtures", "pipeline", entry["id"], f"{config}.json").read_text())
            sampler = kinetics_test_indices if config == "k400" else uniform_test_indices
            assert sampler(record["total_frames"]).reshape(-1).tolist() == record["frame_inds"], entry["id"]
            checked += 1
    assert checked == 68


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 5000), clip_len=st.integers(1, 64), interval=st.integers(1, 8),
       num_clips=st.integers(1, 10))
def test_kinetics_properties(num_frames, clip_len, interval, num_clips):
    idx = kinetics_test_indices(num_frames, clip_len, interval, num_clips)
    assert idx.shape == (num_clips, clip_len)
    assert idx.min() >= 0 and idx.max() < num_frames
    span = clip_len * interval
    starts = idx[:, 0]
    assert (np.diff(starts) >= 0).all()  # clips in time order
    unwrapped = starts[:, None] + np.arange(clip_len) * interval
    assert (idx == unwrapped % num_frames).all()  # fixed stride, wrapping past the end
    if num_frames >= span:
        assert (unwrapped < num_frames).all()  # long videos never wrap
    else:
        assert (starts == 0).all()


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 5000), clip_len=st.integers(1, 64))
def test_uniform_properties(num_frames, clip_len):
    idx = uniform_test_indices(num_frames, clip_len)[0]
    assert idx.shape == (clip_len,)
    assert idx.min() >= 0 and idx.max() < num_frames
    assert (np.diff(idx) >= 0).all()  # no wrap: non-decreasing
    if num_frames >= 2 * clip_len:
        assert (np.diff(idx) > 0).all()  # long videos: distinct frames
    seg = (num_frames - 1) / clip_len
    assert abs(idx[0] - seg / 2) <= 1 and abs(idx[-1] - (num_frames - 1 - seg / 2)) <= 1.5


def _check_cover(segments, num_frames, gaps_allowed=False):
    assert segments[0].start_frame == 0 and segments[-1].end_frame == num_frames
    for before, after in zip(segments, segments[1:]):
        assert after.start_frame > before.start_frame and after.end_frame > before.end_frame
        assert gaps_allowed or after.start_frame <= before.end_frame  # no gap
    assert [s.index for s in segments] == list(range(len(segments)))


def test_segments_constant_rate_non_zero_start():
    ts = 1.5 + np.arange(100) / 25.0
    segments = plan_segments(ts, window_s=1.0, stride_s=0.5)
    _check_cover(segments, 100)
    assert segments[0].t_start == 1.5 and segments[0].num_frames == 25
    assert segments[1].start_frame == 13 and segments[1].t_start == pytest.approx(2.02)  # first frame >= 2.0 s
    assert segments[-1].t_end == pytest.approx(5.5)  # end of the last frame
    assert all(s.num_frames == 25 for s in segments)  # the last window is moved back, not cut short


def test_segments_variable_frame_rate():
    steps = np.where(np.arange(120) < 60, 1 / 30, 1 / 10)  # 2 s at 30 fps, then 6 s at 10 fps
    ts = np.concatenate([[0.0], np.cumsum(steps[:-1])])
    segments = plan_segments(ts, window_s=2.0, stride_s=2.0)
    _check_cover(segments, 120)
    assert segments[0].num_frames == 60 and segments[1].num_frames == 20  # frames per 2 s follow the rate
    assert segments[1].t_start == pytest.approx(2.0)


def test_segments_short_video_is_one_segment():
    ts = np.arange(10) / 25.0
    (only,) = plan_segments(ts, window_s=5.0, stride_s=1.0)
    assert (only.start_frame, only.end_frame, only.t_start) == (0, 10, 0.0)
    assert only.t_end == pytest.approx(0.4)
    (one_frame,) = plan_segments([3.0], 2.0, 2.0)
    assert one_frame.num_frames == 1 and one_frame.t_end == 3.0


def test_segment_samples_as_its_own_video():
    ts = np.arange(1800) / 30.0
    segment = plan_segments(ts, 10.0, 10.0)[2]
    idx = segment.to_video(kinetics_test_indices(segment.num_frames))
    assert idx.min() >= segment.start_frame and idx.max() < segment.end_frame
    assert (idx - segment.start_frame == kinetics_test_indices(300)).all()


def test_segments_by_frames():
    ts = np.arange(100) / 10.0
    segments = plan_segments_by_frames(ts, 32, 16)
    _check_cover(segments, 100)
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 32), (16, 48), (32, 64), (48, 80), (64, 96),
                                                               (68, 100)]
    assert segments[1].t_start == pytest.approx(1.6) and segments[1].t_end == pytest.approx(4.8)
    assert plan_segments_by_frames(ts[:5], 32, 16)[0].num_frames == 5


@settings(max_examples=100, deadline=None)
@given(num_frames=st.integers(1, 600), window=st.floats(0.1, 20), stride=st.floats(0.1, 20),
       start=st.floats(0, 100), fps=st.floats(1, 60))
def test_segment_properties(num_frames, window, stride, start, fps):
    ts = start + np.arange(num_frames) / fps
    segments = plan_segments(ts, window, stride)
    _check_cover(segments, num_frames, gaps_allowed=stride > window)
    end = video_end_time(ts)
    for s in segments:
        assert s.t_start == ts[s.start_frame] and s.t_start <= s.t_end <= end + 1e-9
        assert ts[s.end_frame - 1] < s.t_start + window or s.num_frames == 1


def test_segment_arguments_are_checked():
    with pytest.raises(ValueError):
        plan_segments([], 1.0, 1.0)
    with pytest.raises(ValueError):
        plan_segments([0.0, 1.0], 0.0, 1.0)
    with pytest.raises(ValueError):
        plan_segments([1.0, 0.0], 1.0, 1.0)
