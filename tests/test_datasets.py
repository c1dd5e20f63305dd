"""List files (official and CSV/TSV), their error reports, and the clip sampling/cropping of the datasets."""

import numpy as np
import pytest

from vswin_cli.datasets import parse_list
from vswin_cli.protocol import ClipSpec
from vswin_cli.transforms import make_views
from vswin_cli.errors import ConfigError
from vswin_cli.train_augment import (
    is_direction_sensitive,
    kinetics_train_indices,
    random_resized_crop_box,
    train_clip,
    uniform_train_indices,
)
from vswin_cli.sampling import clip_indices


@pytest.fixture
def root(tmp_path):
    for name in ("a.mp4", "b.mp4", "sub/c d.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def write(path, text):
    path.write_text(text)
    return path


def test_official_format(root):
    lst = write(root / "l.txt", "# comment\na.mp4 3\n\nb.mp4\t0\n")
    entries = parse_list(lst, root, class_names=list("abcd"))
    assert [(e.rel_path, e.label, e.line) for e in entries] == [("a.mp4", 3, 2), ("b.mp4", 0, 4)]
    assert entries[0].path == root / "a.mp4"


def test_csv_and_tsv_with_header_allow_spaces_in_paths(root):
    csv = write(root / "l.csv", 'path,label\n"sub/c d.mp4",1\na.mp4,0\n')
    assert [(e.rel_path, e.label) for e in parse_list(csv, root)] == [("sub/c d.mp4", 1), ("a.mp4", 0)]
    tsv = write(root / "l.tsv", "path\tlabel\nsub/c d.mp4\t2\n")
    assert parse_list(tsv, root)[0].rel_path == "sub/c d.mp4"


def test_class_names_are_accepted_in_place_of_numbers(root):
    lst = write(root / "l.csv", "path,label\na.mp4,dog\n")
    assert parse_list(lst, root, class_names=["cat", "dog"])[0].label == 1


def test_multi_label_lines_are_rejected_unless_asked_for(root):
    lst = write(root / "l.txt", "a.mp4 1 2\n")
    with pytest.raises(ConfigError, match=r"line 1: 2 labels \(1 2\): multi-label lines need a multi-label head"):
        parse_list(lst, root)
    assert parse_list(lst, root, multi_label=True)[0].labels == (1, 2)


def test_every_problem_is_reported_with_its_line_number(root):
    lst = write(root / "l.txt", "a.mp4 0\nb.mp4 7\nmissing.mp4 1\na.mp4 1\nb.mp4 x\nb.mp4\nb.mp4 -1\n")
    with pytest.raises(ConfigError) as info:
        parse_list(lst, root, class_names=list("abc"))
    message = str(info.value)
    assert "7 bad line(s)" not in message  # 6 bad lines, line 1 is fine
    assert "6 bad line(s)" in message
    assert "line 2: label 7 is outside the label map (0..2)" in message
    assert f"line 3: {root / 'missing.mp4'} does not exist" in message
    assert "line 4: 'a.mp4' duplicates line 1" in message
    assert "line 5: label 'x' is not a 0-based class number or class name" in message
    assert "line 6: 'b.mp4' has no label" in message
    assert "line 7: label -1 is outside the label map" in message
    assert info.value.hint


def test_empty_and_missing_lists(root):
    with pytest.raises(ConfigError, match="no videos listed"):
        parse_list(write(root / "e.txt", "# nothing\n"), root)
    with pytest.raises(ConfigError, match="list file not found"):
        parse_list(root / "nope.txt", root)
    with pytest.raises(ConfigError, match="not a folder"):
        parse_list(write(root / "l.txt", "a.mp4 0\n"), root / "nope")


def test_eval_indices_follow_the_spec_examples():
    spec = ClipSpec()  # 32 x 2, 4 clips
    assert clip_indices(280, spec)[:, 0].tolist() == [27, 81, 135, 189]
    short = clip_indices(20, spec)
    assert short[0, :12].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 0, 2] and (short == short[0]).all()
    uniform = clip_indices(280, ClipSpec(sampling="uniform", num_clips=1))
    assert uniform[0, :5].tolist() == [4, 13, 21, 30, 39]
    assert clip_indices(20, ClipSpec(sampling="uniform", num_clips=1))[0, :6].tolist() == [0, 1, 1, 2, 2, 3]


def test_make_views_three_crops_are_crop_major_and_at_the_spec_offsets():
    # 2 clips x 2 frames of a 4 x 6 frame whose pixel value encodes (frame, x); crop 4 (no resize).
    spec = ClipSpec(clip_len=2, frame_interval=1, num_clips=2, num_crops=3, crop_size=4, resize_short=4)
    frames = np.zeros((4, 4, 6, 3), dtype=np.uint8)
    for t in range(4):
        for x in range(6):
            frames[t, :, x] = 10 * t + x
    views = make_views(frames, spec.num_clips, spec.clip_len, spec.num_crops, short_side=4, crop=4)
    assert views.shape == (6, 3, 2, 4, 4)
    raw = views[:, 0] * 58.395 + 123.675  # undo Normalize on channel R
    # view = crop * num_clips + clip; crops at x = 0, 2*step, step with step = 1
    assert raw[0, 0, 0, 0].item() == pytest.approx(0, abs=1e-4)  # crop left, clip 0, frame 0, x 0
    assert raw[2, 0, 0, 0].item() == pytest.approx(2, abs=1e-4)  # crop right starts at x = 2
    assert raw[4, 0, 0, 0].item() == pytest.approx(1, abs=1e-4)  # crop middle starts at x = 1
    assert raw[1, 1, 0, 0].item() == pytest.approx(30, abs=1e-4)  # crop left, clip 1, its 2nd frame = frame 3


def test_train_sampling_follows_the_official_rules():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = kinetics_train_indices(280, 32, 2, rng)
        assert 0 <= idx[0] <= 280 - 64 and (np.diff(idx) == 2).all()
    starts = {int(kinetics_train_indices(20, 8, 2, rng)[0]) for _ in range(200)}
    assert starts == {0, 1, 2, 3, 4}  # a = 20 - 16 + 1 = 5 > 0: start = randint(0, a - 1)
    short = kinetics_train_indices(10, 8, 2, rng)
    assert short.tolist() == [0, 2, 4, 6, 8, 0, 2, 4]  # a < 0 and N <= W: start 0, wrap
    u = uniform_train_indices(280, 32, rng)
    bounds = np.round(279 / 32 * np.arange(33))
    assert ((u >= bounds[:-1]) & (u <= bounds[1:])).all()


def test_random_resized_crop_stays_inside_and_falls_back_to_the_centre_square():
    rng = np.random.default_rng(1)
    for _ in range(100):
        top, left, h, w = random_resized_crop_box(36, 48, rng)
        assert 0 <= top and top + h <= 36 and 0 <= left and left + w <= 48 and h * w >= 0.07 * 36 * 48
    assert random_resized_crop_box(36, 48, rng, area_range=(5.0, 5.0)) == (0, 6, 36, 36)


def test_train_clip_shape_and_same_crop_for_every_frame():
    frames = np.repeat(np.random.default_rng(0).integers(0, 255, (1, 40, 50, 3), dtype=np.uint8), 4, axis=0)
    clip = train_clip(frames, 32, flip=True, rng=np.random.default_rng(3))
    assert clip.shape == (3, 4, 32, 32)
    assert (clip[:, 0] == clip[:, 3]).all()  # identical frames stay identical: one crop and flip per clip
    again = train_clip(frames, 32, flip=True, rng=np.random.default_rng(3))
    assert (clip == again).all()


def test_direction_sensitive_labels_turn_flipping_off():
    assert is_direction_sensitive(["Pushing something from left to right", "Holding something"])
    assert not is_direction_sensitive(["abseiling", "playing guitar", "brightening"])
