"""The box labeller: box files read in three formats, every pixel decided as the docstring of
lib/tools/label_boxes.py says, and the command writing a root that training reads."""

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.live.errors import UserError
from lib.tools.label_boxes import (
    Agreement,
    Boxes,
    LabelSettings,
    crop_window,
    label_photo,
    read_coco_boxes,
    read_txt_boxes,
    read_yolo_boxes,
    summary,
)
from lib.training.masks import read_target
from lib.training.pairs import scan_root
from lib.training.pictures import GUTTER, mosaic, save_picture

ROOT = Path(__file__).resolve().parents[1]


def test_the_three_box_formats_read_the_same_person(tmp_path):
    ours = tmp_path / "a.txt"
    ours.write_text("10 20 50 100\n\n")
    yolo = tmp_path / "a_yolo.txt"
    yolo.write_text("0 0.15 0.3 0.2 0.4 0.93\n2 0.5 0.5 0.1 0.1\n")  # a confidence may follow; class 2 is no person
    coco = tmp_path / "instances.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "a.jpg"}],
                "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
                "annotations": [
                    {"image_id": 7, "category_id": 1, "bbox": [10, 20, 40, 80], "iscrowd": 0},
                    {"image_id": 7, "category_id": 1, "bbox": [100, 0, 50, 50], "iscrowd": 1},
                    {"image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 0},
                ],
            }
        )
    )
    assert read_txt_boxes(ours, 200, 200).people == [(10, 20, 50, 100)]
    assert np.allclose(read_yolo_boxes(yolo, 200, 200).people, [(10, 20, 50, 100)])
    from_coco = read_coco_boxes(coco)["a"]
    assert from_coco.people == [(10, 20, 50, 100)] and from_coco.crowds == [(100, 0, 150, 50)]


@pytest.mark.parametrize(
    "reader, text, expected",
    [
        (read_txt_boxes, "10 20 50\n", "line 1"),
        (read_txt_boxes, "1 2 3 4\nten 2 3 4\n", "line 2"),
        (read_yolo_boxes, "0 15 30 20 40\n", "normalised"),
    ],
)
def test_a_bad_box_line_is_named_with_its_file_and_line(tmp_path, reader, text, expected):
    path = tmp_path / "b.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=expected) as caught:
        reader(path, 100, 100)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_coco_json_is_refused_in_one_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"images": []}')
    with pytest.raises(UserError, match="not a COCO instances file"):
        read_coco_boxes(path)


def test_the_crop_has_the_networks_aspect_turned_with_the_box():
    tall = crop_window((100, 100, 140, 300), (400, 600), 0.0, (256, 192))
    wide = crop_window((100, 100, 300, 140), (400, 600), 0.0, (256, 192))
    for (x0, y0, x1, y1), ratio in ((tall, 256 / 192), (wide, 192 / 256)):
        assert abs((y1 - y0) / (x1 - x0) - ratio) < 0.02
    assert tall[1] <= 100 and tall[3] >= 300  # the whole box is in the crop


def disk_predictor(whole_prob: float = 0.0):
    """A stand-in network: a centred disk of person in every crop; the whole photo (the last
    frame asked for) gets `whole_prob` everywhere."""

    def predict(frames):
        probs = []
        for frame in frames[:-1]:
            h, w = frame.shape[:2]
            p = np.zeros((h, w), np.float32)
            cv2.ellipse(p, (w // 2, h // 2), (w // 5, h // 3), 0, 0, 360, 1.0, -1)
            probs.append(p)
        return probs + [np.full(frames[-1].shape[:2], whole_prob, np.float32)]

    return predict


def test_each_pixel_is_person_unknown_or_background_as_documented():
    photo = np.full((300, 400, 3), 100, np.uint8)
    boxes = Boxes(people=[(40, 40, 120, 240), (300, 100, 310, 112)], crowds=[(200, 200, 260, 260)])
    settings = LabelSettings(min_box_px=24)
    mask, unknown, prob = label_photo(photo, boxes, disk_predictor(), (256, 192), settings)
    assert mask[140, 80] == 255 and not unknown[140, 80]  # the disk in the big box: person
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert unknown[105, 305] and mask[105, 305] == 0  # a 12 px box: unknown as a whole
    assert unknown[230, 230]  # a crowd region: unknown
    assert mask[20, 380] == 0 and not unknown[20, 380]  # far from every box: background
    assert not mask[:, 130:].any() or mask[:, 130:].sum() == mask[100:112, 300:310].sum()  # kept inside boxes
    # person-like pixels outside every box (people nobody boxed) become unknown
    _, unknown_all, _ = label_photo(photo, boxes, disk_predictor(whole_prob=0.9), (256, 192), settings)
    assert unknown_all[20, 380]


def test_agreement_leaves_unknown_pixels_out_and_counts_them():
    hand = np.zeros((10, 10), np.uint8)
    hand[:, :5] = 255
    ours = np.zeros((10, 10), np.uint8)
    ours[:, :4] = 255
    unknown = np.zeros((10, 10), bool)
    unknown[:, 4] = True  # the only column where they differ
    agreement = Agreement()
    agreement.add(ours, unknown, hand, None)
    assert agreement.inter == agreement.union == 40
    assert "IoU 1.0000" in agreement.report() and "10.0 %" in agreement.report()


def test_the_closing_line_says_the_share_left_unknown_with_or_without_hand_masks():
    assert summary(3, ["a.onnx", "b.pt"], None, 25, 200) == (
        "labelled 3 photos with a.onnx, b.pt (12.5 % of all pixels left unknown)"
    )
    assert summary(1, ["a.onnx"], Path("out/root"), 0, 0).endswith(" into out/root (0.0 % of all pixels left unknown)")


def test_the_label_picture_fills_every_row_whatever_the_tiles_aspects():
    sizes = [(300, 400), (300, 200), (200, 600), (400, 300), (100, 100), (480, 640), (90, 320)]  # (height, width)
    tiles = [np.full((h, w, 3), 255, np.uint8) for h, w in sizes]
    picture = mosaic(tiles, row_height=150, per_row=3, gap=4)
    assert picture.min() == GUTTER  # grey gutters, no black hole where a row would end short
    count, labels = cv2.connectedComponents((picture[:, :, 0] == 255).astype(np.uint8))
    assert count - 1 == len(tiles)  # every tile, each apart from the others
    heights = [int(np.count_nonzero(np.any(labels == k, axis=1))) for k in range(1, count)]
    assert all(75 <= h <= 300 for h in heights)  # rows near row_height, none squashed or blown up
    assert mosaic(tiles[:1], row_height=150).shape == (150 + 8, 200 + 8, 3)  # one tile: itself, framed


def test_a_picture_is_written_in_the_format_of_its_suffix(tmp_path, monkeypatch):
    """save_picture (--picture labels.jpg, training's and evaluate's pictures) wrote PNG bytes whatever the name."""
    picture = np.zeros((60, 80, 3), np.uint8)
    picture[:, :40] = (200, 30, 30)  # RGB: red on the left
    jpeg, png = b"\xff\xd8", b"\x89PNG\r\n\x1a\n"  # the formats' magic bytes
    for name, magic in (("labels.jpg", jpeg), ("labels.JPEG", jpeg), ("labels.png", png)):
        save_picture(tmp_path / name, picture, flag="--picture")
        assert (tmp_path / name).read_bytes().startswith(magic), name
        back = cv2.imread(str(tmp_path / name))
        assert back.shape == (60, 80, 3) and back[30, 10, 2] > 150 > back[30, 10, 0]  # BGR on disk: red stays red
    expected = r"^--picture .*labels\.xyz: OpenCV cannot encode a 80x60 image as \.xyz \(expected \.png, \.jpg, .*\)$"
    with pytest.raises(UserError, match=expected):
        save_picture(tmp_path / "labels.xyz", picture, flag="--picture")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.JPEG", "labels.jpg", "labels.png"]  # no temporary
    # the labeller refuses such a name before labelling any photo
    from scripts.label_boxes import main

    argv = ["label_boxes", "--images", str(tmp_path), "--boxes", str(tmp_path), "--score-against", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--picture", str(tmp_path / "labels")])
    with pytest.raises(UserError, match=r"^--picture .*labels: OpenCV cannot encode a picture as a file without a"):
        main()


@pytest.mark.slow
def test_the_command_writes_a_root_that_training_reads_and_scores_itself(tmp_path):
    images, boxes, hand = tmp_path / "images", tmp_path / "boxes", tmp_path / "masks"
    for folder in (images, boxes, hand):
        folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        photo = rng.integers(0, 60, (240, 320, 3), dtype=np.uint8)
        truth = np.zeros((240, 320), np.uint8)
        cv2.ellipse(truth, (100 + 40 * i, 130), (30, 80), 0, 0, 360, 255, -1)
        photo[truth > 0] = (60, 120, 200)
        cv2.imwrite(str(images / f"p{i}.jpg"), photo)
        cv2.imwrite(str(hand / f"p{i}.png"), truth)
        (boxes / f"p{i}.txt").write_text(f"{70 + 40 * i} 50 {130 + 40 * i} 210\n")
    out = tmp_path / "labelled"
    command = [sys.executable, "-m", "scripts.label_boxes", "--images", str(images), "--boxes", str(boxes)]
    command += ["--ckpt", str(ROOT / "models" / "lite.onnx"), "--out", str(out), "--score-against", str(hand)]
    command += ["--picture", str(tmp_path / "labels.jpg")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "against hand masks: IoU" in done.stdout
    # the closing line says the share left unknown (always; the line above only with --score-against)
    assert re.search(
        r"^labelled 3 photos with .* into .*labelled \(\d+\.\d % of all pixels left unknown\)$", done.stdout, re.M
    )
    scan = scan_root(out)
    assert len(scan.pairs) == 3 and not scan.bad
    target = read_target(scan.pairs[0])
    assert target[5, 5] == 0  # far from the box: background
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists already" in again.stderr  # nothing is overwritten
