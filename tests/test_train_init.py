"""`vswin train --arch CONFIG --init IMAGENET2D.pth`: the 2D Swin weights arrive inflated exactly as the
official `inflate_weights` does (golden: ../shared/fixtures/inflate), with a new head for our classes."""

import torch

from conftest import shared_path
from vswin_cli.train import TrainConfig, build_model


def test_init_from_an_imagenet_2d_file_matches_the_official_inflation(tmp_path):
    fixture = shared_path("fixtures", "inflate", "a_standard_from_in1k")
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    cfg = TrainConfig(train_list=str(tmp_path / "l.txt"), out_dir=str(tmp_path / "run"),
                      arch=str(fixture / "config.json"), init=str(fixture / "imagenet2d.pth"))
    model, pretrained = build_model(cfg, num_classes=5)
    assert pretrained and model.head.out_features == 5
    expected = torch.load(fixture / "inflated_state_dict.pt", weights_only=True)
    state = model.state_dict()
    shared = [k for k in expected if k in state and "relative_position_index" not in k]
    assert len(shared) >= 100  # names are the official ones for almost every tensor
    for key in shared:
        torch.testing.assert_close(state[key], expected[key], rtol=0, atol=0, msg=key)
    assert state["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (2535, 2)
