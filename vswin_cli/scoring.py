"""From scored segments to records, in input order: the part both engines share.

An engine (`inference.Engine` on this machine, `engines.ray.RayEngine` on a Ray cluster) reports what
arrived as `(position, VideoScores, finished)` for the earliest unfinished video (`Scoring._updates`);
`Scoring.stream` turns that into each segment's `ScoredSegment` as soon as it and the ones before it
are scored, then the video's `VideoResult` (segments, frame-weighted summary, events, or the error).
`segment_scores` is the per-segment arithmetic of the model stage (softmax per view, weighted mean).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from vswin_cli.aggregate import (
    RunningMean,
    SegmentResult,
    VideoError,
    VideoResult,
    VideoSummary,
    average_views,
    merge_segments,
    top_k,
)
from vswin_cli.inputs import VideoInput
from vswin_cli.protocol import ClipSpec
from vswin_cli.sampling import SegmentPlan
from vswin_cli.segments import VideoDecoded


@dataclass(frozen=True)
class RecordOptions:
    """What the records of a run hold.

    Attributes:
        top_k, threshold: tags kept per segment and per video (0 keeps none; scores below the threshold go).
        merge: also emit events joining consecutive segments with the same top label.
        features: add each segment's pooled embedding (weighted mean over its views).
    """

    top_k: int = 5
    threshold: float = 0.0
    merge: bool = False
    features: bool = False


@dataclass
class VideoScores:
    """One video's scores, the engine's hand-off to `tag` (records) and `eval` (metrics).

    Attributes:
        probs: segment index -> float32 (K,) class probabilities (softmax per view, weighted mean).
        features: segment index -> float32 (C,) pooled embedding (with `RecordOptions.features`).
        plans: segment index -> its `SegmentPlan` (frames and times).
        decoded: the video's frame count, fps and duration, once it is fully read.
        failed: why the video could not be tagged, or None.
        emitted: segments already handed on in order (`Engine.stream` streams them, then drops their data).
    """

    probs: dict[int, torch.Tensor] = field(default_factory=dict)
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    plans: dict[int, SegmentPlan] = field(default_factory=dict)
    decoded: VideoDecoded | None = None
    failed: VideoError | None = None
    emitted: int = 0

    def restart_from(self, first: int) -> int:
        """The segment to decode from after an interruption: the end of the scored prefix. Segments
        scored out of order after it (workers sharing a video) are dropped and decoded again."""
        start = max(first, self.emitted)
        while start in self.probs:
            start += 1
        for index in [i for i in self.probs if i > start]:
            del self.probs[index], self.plans[index]
            self.features.pop(index, None)
        self.decoded = None  # sent again by the new loader
        return start

    def finished(self) -> bool:
        if self.failed is not None:
            return True
        return self.decoded is not None and self.emitted + len(self.probs) >= self.decoded.num_segments


@dataclass(frozen=True)
class ScoredSegment:
    """One segment as `Engine.stream` streams it: its record and its probabilities (kept for `--resume`)."""

    result: SegmentResult
    probs: torch.Tensor  # float32 (K,)


@dataclass
class ResumedVideo:
    """A video's segments from an interrupted run, to be continued after them (`--resume`).

    Attributes:
        segments: the first segments' records, in order (0 .. len-1).
        probs: float32 (K,) probabilities of each of them (the summary needs them).
    """

    segments: list[SegmentResult]
    probs: list[torch.Tensor]




def emit_ready(states: dict[int, VideoScores], next_pos: int, count: int) -> Iterator[tuple[int, VideoScores, bool]]:
    """`(position, state, finished)` of each finished video from `next_pos` on, in input order, then of the
    earliest unfinished one; finished videos are dropped from `states`. Returns the new `next_pos`
    (`next_pos = yield from emit_ready(...)`): the one in-order hand-off of both engines."""
    while next_pos < count:
        finished = states[next_pos].finished()
        yield next_pos, states[next_pos], finished
        if not finished:
            break
        del states[next_pos]
        next_pos += 1
    return next_pos


def segment_scores(logits: torch.Tensor, weights: torch.Tensor, features: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One segment's probabilities from its views: float32 (K,) from logits (V, K) and weights (V,)
    (softmax per view, weighted mean); with `features` (V, C), the weighted mean embedding (C,) too."""
    probs = average_views(logits, "prob", weights)
    if features is None:
        return probs, None
    w = weights[:, None]
    return probs, (features * w).sum(0) / w.sum()


class Scoring:
    """What both engines do with scored segments: stream them in input order as records.

    A subclass provides `_updates(videos, first)`: `(position, VideoScores, finished)` of the earliest
    unfinished video whenever something arrived, each video in input order, every video once finished.

    Attributes:
        labels: class names; model_name: written into every record; spec: the views per segment;
        records: see `RecordOptions`.
    """

    labels: list[str]
    model_name: str
    spec: ClipSpec
    records: RecordOptions

    def _updates(self, videos: Sequence[VideoInput], first: dict[int, int]) -> Iterator[tuple[int, VideoScores, bool]]:
        raise NotImplementedError

    def run(self, videos: Sequence[VideoInput]) -> Iterator[VideoResult]:
        """Tag `videos`: one `VideoResult` per video (segments, summary, events, or the error), in input order."""
        for item in self.stream(videos):
            if isinstance(item, VideoResult):
                yield item

    def stream(self, videos: Sequence[VideoInput], resumed: dict[int, ResumedVideo] | None = None
               ) -> Iterator[ScoredSegment | VideoResult]:
        """Tag `videos`, streaming: each segment's `ScoredSegment` as soon as it and the ones before it
        are scored, then the video's `VideoResult` (all its segments, summary, events), in input order.

        Args:
            videos: the inputs, in output order.
            resumed: position in `videos` -> segments an interrupted run already wrote; those are
                streamed again first (from memory), and the video is decoded from the next segment on.
        """
        resumed = resumed or {}
        first = {pos: len(r.segments) for pos, r in resumed.items()}
        done: list[SegmentResult] = []
        summary = RunningMean()
        current = -1
        for pos, state, finished in self._updates(videos, first):
            if pos != current:  # a new video: start its summary, replay what a resumed run kept
                current, done, summary = pos, [], RunningMean()
                for seg, probs in zip(*(resumed[pos].segments, resumed[pos].probs)) if pos in resumed else ():
                    summary.add(probs, seg.end_frame - seg.start_frame)
                    done.append(seg)
                    yield ScoredSegment(seg, probs)
                state.emitted = len(done)
            while state.failed is None and state.emitted in state.probs:
                i = state.emitted
                seg = self._segment_result(videos[pos].key, i, state)
                probs = state.probs.pop(i)
                state.features.pop(i, None)
                summary.add(probs, state.plans.pop(i).segment.num_frames)
                done.append(seg)
                state.emitted += 1
                yield ScoredSegment(seg, probs)
            if finished:
                yield self._result(videos[pos].key, state, done, summary)

    def scores(self, videos: Sequence[VideoInput]) -> Iterator[tuple[VideoInput, VideoScores]]:
        """Score `videos`: `(video, VideoScores)` with every segment's probabilities, in input order."""
        for pos, state, finished in self._updates(videos, {}):
            if finished:
                yield videos[pos], state

    def _segment_result(self, key: str, index: int, state: VideoScores) -> SegmentResult:
        """The record of one scored segment (top-k labels, times, frames, optional embedding)."""
        span, opts = state.plans[index].segment, self.records
        features = state.features.get(index)
        return SegmentResult(
            video=key, segment=index, start=round(span.t_start, 3), end=round(span.t_end, 3),
            start_frame=span.start_frame, end_frame=span.end_frame,
            top=top_k(state.probs[index], self.labels, opts.top_k, opts.threshold), views=self.spec.num_views,
            model=self.model_name,
            features=tuple(round(v, 6) for v in features.tolist()) if features is not None else None,
        )

    def _result(self, key: str, state: VideoScores, segments: list[SegmentResult], summary: RunningMean) -> VideoResult:
        """The whole video: its segments, the frame-weighted summary and the merged events; or its error."""
        if state.failed is not None:
            return VideoResult(video=key, error=state.failed)
        opts, info = self.records, state.decoded
        video_summary = VideoSummary(
            video=key, num_segments=len(segments), duration=round(info.duration, 3), num_frames=info.num_frames,
            fps=round(info.fps, 3), top=top_k(summary.mean(), self.labels, opts.top_k, opts.threshold),
            views=self.spec.num_views, model=self.model_name, skipped=info.skipped, gaps=info.gaps,
        )
        events = merge_segments(segments) if opts.merge else ()
        return VideoResult(video=key, segments=tuple(segments), summary=video_summary, events=events)
