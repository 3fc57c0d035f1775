"""`vllm-videoanchor explain` from files, as a user runs it: a real mp4 and PNG images made
here, the pictures and JSON it writes, and clear errors for bad input. (That its scores are
the gains the engine applies is checked per architecture in test_engine_plugin.py.)"""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image
from utils import VLLM_VIDEOANCHOR, write_mp4

from vllm_videoanchor import heatmap
from vllm_videoanchor.explain import explain, load_media
from vllm_videoanchor.explain import main as explain_main
from vllm_videoanchor.testing import build_tiny_model

pytestmark = pytest.mark.slow
EIGHT_FRAMES = {"video": {"num_frames": 8}}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("vllm", reason="explain decodes media with vLLM's loaders (the cpu extra)")
    return build_tiny_model(tmp_path_factory.mktemp("qwen2_5_vl"), "qwen2_5_vl")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("media") / "video.mp4", 8, 112, seed=0)


def run_explain(*args):
    return subprocess.run([VLLM_VIDEOANCHOR, "explain", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_explain_writes_the_heatmap_labels_and_scores_of_a_video(model, video, tmp_path):
    out = run_explain(model, video, "--out", tmp_path / "out", "--anchor", '{"n_clusters": 4}',
                      "--media-io-kwargs", json.dumps(EIGHT_FRAMES))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"heatmap: {tmp_path / 'out' / 'heatmap.png'}" in out.stdout
    document = json.loads((tmp_path / "out" / "anchors.json").read_text())
    # 8 frames -> 4 token frames (temporal patch 2) of 4 x 4 merged patches
    assert [p["grid"] for p in document["panels"]] == [[4, 4]] * 4
    assert [p["title"] for p in document["panels"]] == ["frames 0-1", "frames 2-3", "frames 4-5", "frames 6-7"]
    assert document["solver"]["n_tokens"] == len(document["score"]) == 64
    assert document["params"]["n_clusters"] == 4 and len(set(document["label"])) == 4
    score = np.array(document["score"])
    assert score.min() == pytest.approx(0.0, abs=1e-6) and score.max() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(document["gain_k"], 1 + document["params"]["alpha_k"] * score, rtol=1e-5)
    expected = heatmap.Grid(columns=4, rows=1, cell_width=heatmap.CELL_HEIGHT).size  # square frames
    for name in ("heatmap.png", "labels.png"):
        assert Image.open(tmp_path / "out" / name).size == expected


def test_cell_colours_follow_the_scores(model, video, tmp_path):
    """The hottest token's cell is brighter than the coldest's in the picture."""
    explained = explain(model, [str(video)], {"n_clusters": 4}, EIGHT_FRAMES)
    cell = heatmap.CELL_HEIGHT // 4
    score = explained.gains.score.numpy()
    top = heatmap.TITLE_HEIGHT
    drawn = np.asarray(heatmap.draw(explained.panels, heatmap.ramp_colours(score), ""), dtype=float)
    plain = np.asarray(heatmap.draw(explained.panels, np.zeros((64, 3), np.uint8), ""), dtype=float)

    def cell_brightness(token):
        panel = token // 16
        row, col = divmod(token % 16, 4)
        y, x = top + row * cell + cell // 2, panel * heatmap.CELL_HEIGHT + col * cell + cell // 2
        return (drawn[y, x] - plain[y, x]).sum()  # the overlay's own contribution at the cell's centre

    assert cell_brightness(int(score.argmax())) > cell_brightness(int(score.argmin()))


def test_explain_anchors_several_images_jointly(model, tmp_path):
    paths = []
    for seed in range(4):
        pixels = np.random.default_rng(seed).uniform(0, 255, (112, 112, 3)).astype(np.uint8)
        paths.append(tmp_path / f"view{seed}.png")
        Image.fromarray(pixels).save(paths[-1])
    explained = explain(model, [str(p) for p in paths], {"n_clusters": 4})
    assert explained.media.modality == "image" and len(explained.tokens) == 4 * 16
    assert [p.title for p in explained.panels] == ["image 0", "image 1", "image 2", "image 3"]
    assert len(set(explained.gains.labels.tolist())) == 4  # one solve over the four images


@pytest.mark.parametrize("case", ["missing", "not a video", "mixed", "text model", "too many clusters",
                                  "bad anchor field", "another video's map"])
def test_bad_input_gets_a_clear_error(model, video, tmp_path, case):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not an mp4 file" * 64)
    image = tmp_path / "still.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    text_model = tmp_path / "text_model"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    cases = {
        "missing": (model, [str(tmp_path / "nowhere.mp4")], None, FileNotFoundError, "no such file"),
        "not a video": (model, [str(broken)], None, ValueError, "cannot decode"),
        "mixed": (model, [str(video), str(image)], None, ValueError, "one video file, or image files only"),
        "text model": (text_model, [str(video)], None, ValueError, "has no visual tokens"),
        "too many clusters": (model, [str(video)], {"n_clusters": 500}, ValueError, "n_clusters"),
        "bad anchor field": (model, [str(video)], {"alpha_k": -1}, ValueError, "alpha_k"),
        "another video's map": (model, [str(video)], None, ValueError, "3 scores for 64 visual tokens"),
    }
    model_dir, paths, anchor, error, message = cases[case]
    anchor_map = {"score": [0.5] * 3, "label": [0] * 3} if case == "another video's map" else None
    with pytest.raises(error, match=message):
        explain(model_dir, paths, anchor, EIGHT_FRAMES, anchor_map=anchor_map)


def test_the_command_exits_2_with_the_message(model, tmp_path, capsys):
    assert explain_main([str(model), str(tmp_path / "nowhere.mp4"), "--out", str(tmp_path / "out")]) == 2
    assert "vllm-videoanchor explain: error: media: no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exited:
        explain_main([str(model), str(tmp_path / "nowhere.mp4"), "--anchor", "{not json"])
    assert exited.value.code == 2 and "--anchor is not valid JSON" in capsys.readouterr().err


def test_a_video_file_decodes_to_the_servers_frames(video):
    """Eight frames at 2 fps through vLLM's own loader: the metadata the processor gets."""
    media = load_media([str(video)], EIGHT_FRAMES)
    frames, metadata = media.video
    assert frames.shape == (8, 112, 112, 3) and metadata["total_num_frames"] == 8
    assert metadata["fps"] == pytest.approx(2.0)
