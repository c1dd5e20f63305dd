"""The records of a tag run: what the engine hands to the writers, and what readers give back.

Plain frozen dataclasses, no torch, so that writers and readers (`vswin report`) load fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelScore:
    """One tag: class name, class index and probability."""

    label: str
    index: int
    score: float


@dataclass(frozen=True)
class SegmentResult:
    """Tags of one time segment of a video.

    `end_frame` is exclusive; `views` is the number of views the protocol asked for (identical views
    are computed once but still counted). `features` is the pooled embedding, present with --features.
    """

    video: str
    segment: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    top: tuple[LabelScore, ...]
    views: int
    model: str
    features: tuple[float, ...] | None = None


@dataclass(frozen=True)
class VideoSummary:
    """Tags of a whole video: the mean of its segments' probabilities weighted by their frame counts.

    `skipped` and `gaps` (live streams only): the (start, end) seconds of segments dropped to stay live
    (`--live-policy skip`) and of stream time lost to a reconnect; empty for files.
    """

    video: str
    num_segments: int
    duration: float
    num_frames: int
    fps: float
    top: tuple[LabelScore, ...]
    views: int
    model: str
    skipped: tuple[tuple[float, float], ...] = ()
    gaps: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Event:
    """Consecutive segments of one video that share the same top label (`--merge`)."""

    video: str
    label: str
    index: int
    score: float  # mean top-label score over the merged segments
    start: float
    end: float
    start_frame: int
    end_frame: int
    first_segment: int
    last_segment: int
    model: str


@dataclass(frozen=True)
class VideoError:
    """A video that could not be tagged: `type` is the error class name, `message` says why."""

    video: str
    type: str
    message: str


@dataclass(frozen=True)
class VideoResult:
    """Everything written for one video: its segments and summary, or its error."""

    video: str
    segments: tuple[SegmentResult, ...] = ()
    summary: VideoSummary | None = None
    events: tuple[Event, ...] = ()
    error: VideoError | None = None

    @property
    def top(self) -> tuple[LabelScore, ...]:
        """The whole video's tags, best first (empty for a video that failed)."""
        return self.summary.top if self.summary is not None else ()

    def records(self) -> list[dict]:
        """Exactly the JSON Lines dicts `vswin tag` writes for this video: its segments, events and video
        record, or its error record."""
        from vswin_cli.writers import video_records

        return video_records(self)
