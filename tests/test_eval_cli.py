"""The `vswin eval` / `vswin train` command surface: help, usage errors (exit 2) and clear errors (exit 1)."""

from typer.testing import CliRunner

from vswin_cli.app import app


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_help_explains_both_commands():
    for command, words in (("eval", ["--dataset", "--views", "--predictions", "--resume", "--scores", "metrics_from_scores_file", "torchrun"]),
                           ("train", ["--train-list", "--arch", "--init", "--accum-steps", "--resume", "torchrun"])):
        result = run(command, "--help")
        assert result.exit_code == 0
        for word in words:
            assert word in result.output, (command, word)


def test_bad_views_are_a_usage_error(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    result = run("eval", "--dataset", str(tmp_path / "l.txt"), "--model", "swin-t-k400", "--views", "4x2")
    assert result.exit_code == 2
    assert "crops 1 or 3" in result.output


def test_resume_without_predictions_is_refused_with_a_hint(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    result = run("eval", "--dataset", str(tmp_path / "l.txt"), "--model", "swin-t-k400", "--resume")
    assert result.exit_code == 2  # a usage error
    assert "Error: --resume needs --predictions" in result.output


def test_a_scores_file_not_named_npz_is_refused_before_any_work(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    result = run("eval", "--dataset", str(tmp_path / "l.txt"), "--model", "swin-t-k400", "--scores", str(tmp_path / "s.npy"))
    assert result.exit_code == 2  # a usage error
    assert "Error: --scores" in result.output and "ends in .npz" in result.output
    assert not (tmp_path / "s.npy").exists()


def test_train_needs_exactly_one_starting_point(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    base = ["train", "--train-list", str(tmp_path / "l.txt"), "--out-dir", str(tmp_path / "run")]
    both = run(*base, "--arch", "swin-t", "--model", "swin-t-k400")
    assert both.exit_code == 2 and "give exactly one of --arch and --model" in both.output  # usage errors
    neither = run(*base)
    assert neither.exit_code == 2 and "Hint:" in neither.output
    init_without_arch = run(*base, "--model", "swin-t-k400", "--init", "x.pth")
    assert init_without_arch.exit_code == 2 and "--init goes with --arch" in init_without_arch.output


def test_train_reports_bad_list_lines_before_any_work(tmp_path):
    (tmp_path / "l.txt").write_text("missing.mp4 0\n")
    result = run("train", "--train-list", str(tmp_path / "l.txt"), "--out-dir", str(tmp_path / "run"), "--arch", "swin-t")
    assert result.exit_code == 1
    assert "line 1:" in result.output and "does not exist" in result.output
