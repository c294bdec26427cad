"""Readers for both layouts, the bad cases, the split, and the augmentation's output."""

import os

import cv2
import numpy as np
import pytest
import torch
from helpers import LATIN1, latin1_names, make_folder, restyle_masks

import lib.training.data
from lib.live.errors import UserError
from lib.live.preprocess import Preprocess
from lib.training.data import (
    DecodedCache,
    EpochSampler,
    SegmentationDataset,
    build_dataloaders,
    make_splits,
    read_pair,
)
from lib.training.masks import mask_survey, read_mask
from lib.training.pairs import scan_root
from lib.training.run_folder import load_splits, save_splits
from lib.training.splits import split_pairs
from lib.training.transforms import EvalTransform, TrainTransform


def test_aisegment_layout_pairs_and_alpha(aiseg_root):
    scan = scan_root(aiseg_root)
    assert scan.layout == "aisegment"
    assert len(scan.pairs) == 8 and not scan.bad and not scan.report()
    pair = scan.pairs[0]
    assert pair.image.startswith("clip_img/") and "/clip_" in pair.image
    assert pair.mask == pair.image.replace("clip_img/", "matting/").replace("/clip_", "/matting_")[:-4] + ".png"
    # exactly the reference's reading: the 4th channel of the PNG
    expected = cv2.imread(str(pair.mask_path), cv2.IMREAD_UNCHANGED)[:, :, 3] > 127
    assert np.array_equal(read_mask(pair.mask_path, "aisegment"), expected.astype(np.uint8))


@pytest.mark.parametrize("mask_kind", ["gray", "rgba"])
def test_folder_layout_gray_and_rgba_masks(tmp_path, mask_kind):
    root = make_folder(tmp_path / "f", n=4, mask_kind=mask_kind)
    scan = scan_root(root)
    assert scan.layout == "folder" and len(scan.pairs) == 4
    mask = read_mask(scan.pairs[0].mask_path, "folder")
    assert set(np.unique(mask)) == {0, 1}


def test_folder_masks_with_label_one(tmp_path):
    root = make_folder(tmp_path / "f", n=1)
    path = root / "masks" / "0000.png"
    cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8))  # 0/1 labels
    assert read_mask(path, "folder").sum() > 0


def test_unpaired_files_are_counted_and_named(aiseg_root, folder_root):
    (aiseg_root / "clip_img/1803151818/clip_00000000/lonely.jpg").write_bytes(
        (aiseg_root / "clip_img/1803151818/clip_00000000/1803151818-00000000.jpg").read_bytes()
    )
    (folder_root / "masks" / "orphan.png").write_bytes((folder_root / "masks" / "0000.png").read_bytes())
    scan = scan_root(aiseg_root)
    assert len(scan.pairs) == 8 and scan.unpaired_images == ["clip_img/1803151818/clip_00000000/lonely.jpg"]
    assert "1 images without a mask" in scan.report() and "lonely.jpg" in scan.report()
    scan = scan_root(folder_root)
    assert scan.unpaired_masks == ["masks/orphan.png"] and "masks without an image" in scan.report()


def test_bad_files_are_skipped_and_reported(aiseg_root):
    images = sorted((aiseg_root / "clip_img").rglob("*.jpg"))
    mattes = sorted((aiseg_root / "matting").rglob("*.png"))
    images[0].write_bytes(b"not a jpeg at all")
    data = images[1].read_bytes()
    images[1].write_bytes(data[: len(data) // 2])  # a cut-off download
    rgba = cv2.imread(str(mattes[2]), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(mattes[2]), rgba[:, :, 3])  # matte saved without its alpha channel
    cv2.imwrite(str(mattes[3]), cv2.resize(rgba, (30, 40)))  # wrong size
    scan = scan_root(aiseg_root)
    assert len(scan.pairs) == 4
    reasons = "\n".join(scan.bad)
    assert f"{images[0]}: not a readable image" in reasons
    assert f"{images[1]}: truncated JPEG" in reasons
    assert f"{mattes[2]}: no alpha channel" in reasons
    assert f"{mattes[3]}: mask is 30x40 but its image is 60x80" in reasons
    assert "4 unusable pairs left out" in scan.report()


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_root(tmp_path / "nowhere")
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match=r"expected clip_img/ and matting/ .* or images/ and masks/"):
        scan_root(tmp_path)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(UserError, match="no usable image/mask pairs"):
        make_splits(roots=[str(tmp_path)])


def test_all_masks_without_alpha_stop_with_the_reason(aiseg_root):
    for matte in (aiseg_root / "matting").rglob("*.png"):
        cv2.imwrite(str(matte), cv2.imread(str(matte), cv2.IMREAD_UNCHANGED)[:, :, 3])
    with pytest.raises(UserError, match="no alpha channel"):
        make_splits(roots=[str(aiseg_root)])


def test_split_is_deterministic_disjoint_and_per_root(aiseg_root, folder_root):
    splits, _ = make_splits(roots=[str(aiseg_root), str(folder_root)], split=(0.5, 0.25, 0.25), seed=3)
    again, _ = make_splits(roots=[str(aiseg_root), str(folder_root)], split=(0.5, 0.25, 0.25), seed=3)
    other, _ = make_splits(roots=[str(aiseg_root), str(folder_root)], split=(0.5, 0.25, 0.25), seed=4)
    assert splits == again and splits != other
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 4, 4]
    for name in ("train", "val", "test"):  # both kinds in every split
        assert {p.layout for p in splits[name]} == {"aisegment", "folder"}
    keys = [p.image_path for s in splits.values() for p in s]
    assert len(keys) == len(set(keys)) == 16


def test_split_counts_like_the_reference(aiseg_root):
    pairs = scan_root(aiseg_root).pairs
    split = split_pairs(pairs, (5, 2, 1), seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [5, 2, 1]
    # more training data never moves a test photo
    assert split_pairs(pairs, (3, 2, 1), seed=0)["test"] == split["test"]
    with pytest.raises(UserError, match="asks for 1600 pairs but .* has 8"):
        split_pairs(pairs, (1360, 120, 120), seed=0)
    with pytest.raises(UserError, match="sum to at most 1"):
        split_pairs(pairs, (0.8, 0.2, 0.2), seed=0)


def test_split_lists_round_trip(tmp_path, aiseg_root):
    splits, _ = make_splits(roots=[str(aiseg_root)], split=(0.5, 0.25, 0.25))
    save_splits(tmp_path, splits)
    assert load_splits(tmp_path) == splits
    assert (tmp_path / "splits" / "test.tsv").read_text().startswith("# root\timage\tmask\tlayout")


def test_train_transform_output_and_reproducibility(aiseg_root):
    prep = Preprocess(input_size=(64, 32))
    pairs = scan_root(aiseg_root).pairs
    dataset = SegmentationDataset(pairs, TrainTransform(prep), seed=1)
    a, b = dataset[0], dataset[0]
    assert a["image"].shape == (3, 64, 32) and a["image"].dtype == torch.float32
    assert a["mask"].shape == (1, 64, 32) and set(a["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a["image"], b["image"])  # a function of (seed, epoch, index)
    next_epoch = dataset[2 * len(pairs)]  # key = (epoch * 2 + landscape) * n + index
    assert next_epoch["index"] == 0 and not torch.equal(next_epoch["image"], a["image"])


def test_epoch_sampler_shuffles_per_epoch_and_carries_the_epoch():
    sampler = EpochSampler(5, seed=0)
    first = list(sampler)
    assert sorted(first) == [0, 1, 2, 3, 4] and list(sampler) == first
    sampler.set_epoch(2)
    second = list(sampler)
    assert sorted(second) == [20, 21, 22, 23, 24] and [k - 20 for k in second] != first  # (2 * 2 + 0) * 5 + i


def test_eval_transform_letterboxes_without_stretching():
    prep = Preprocess(input_size=(64, 32))
    image = np.full((40, 40, 3), 200, np.uint8)  # square photo into a 2:1 box
    mask = np.ones((40, 40), np.uint8)
    out = EvalTransform(prep)(image=image, mask=mask)
    rows = out["mask"][0].sum(1)
    assert out["mask"].shape == (1, 64, 32)
    assert int(out["mask"].sum()) == 32 * 32  # the square stays square: 32x32, padded above and below
    assert rows[:16].sum() == 0 and rows[-16:].sum() == 0


def test_decode_failure_at_load_time_is_skipped_with_a_warning(aiseg_root):
    pairs = scan_root(aiseg_root).pairs
    dataset = SegmentationDataset(pairs, EvalTransform(Preprocess(input_size=(64, 64))))
    pairs[0].image_path.write_bytes(b"\xff\xd8garbage\xff\xd9")  # valid-looking ends, corrupt body
    with pytest.warns(UserWarning, match="skipping"):
        sample = dataset[0]
    assert sample["image"].shape == (3, 64, 64)


def test_decoded_cache_gives_the_photo_once_decoded_and_scaled(tmp_path, aiseg_root, monkeypatch):
    pair = scan_root(aiseg_root).pairs[0]  # 60x80 photo
    same = DecodedCache(tmp_path / "full", long_side=80)
    image, mask = same.load(pair)
    truth_image, truth_mask = read_pair(pair)
    assert np.array_equal(image, truth_image) and np.array_equal(mask, truth_mask)
    assert len(list((tmp_path / "full").glob("*.npy"))) == 1
    with monkeypatch.context() as m:  # from the file now: the originals are not decoded again
        m.setattr(lib.training.data, "read_pair", lambda pair: pytest.fail("decoded again"))
        again = same.load(pair)
    assert np.array_equal(again[0], image) and np.array_equal(again[1], mask)
    small, small_mask = DecodedCache(tmp_path / "small", long_side=40).load(pair)
    assert small.shape == (40, 30, 3) and small_mask.shape == (40, 30) and set(np.unique(small_mask)) <= {0, 1}
    assert abs(small_mask.mean() - truth_mask.mean()) < 0.05  # the person keeps its share of the picture


def test_decoded_cache_notices_a_changed_photo(tmp_path, aiseg_root):
    pair = scan_root(aiseg_root).pairs[0]
    cache = DecodedCache(tmp_path / "c", long_side=80)
    first, _ = cache.load(pair)
    image = cv2.imread(str(pair.image_path))
    cv2.imwrite(str(pair.image_path), 255 - image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    os.utime(pair.image_path, ns=(1, 1))  # a different mtime, whatever the clock did
    second, _ = cache.load(pair)
    assert np.abs(second.astype(int) - first.astype(int)).mean() > 50
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2


def test_early_epochs_come_out_at_the_early_size(aiseg_root):
    prep = Preprocess(input_size=(64, 32))
    pairs = scan_root(aiseg_root).pairs
    dataset = SegmentationDataset(pairs, TrainTransform(prep, early_size=(32, 32), early_epochs=2), seed=1)
    assert dataset[0]["image"].shape == (3, 32, 32) and dataset[0]["mask"].shape == (1, 32, 32)
    assert dataset[2 * len(pairs) + 1]["image"].shape == (3, 32, 32)  # epoch 1
    assert dataset[4 * len(pairs)]["image"].shape == (3, 64, 32)  # epoch 2: the full size


def test_early_size_must_fit_the_encoders(aiseg_root):
    splits = {"train": scan_root(aiseg_root).pairs, "val": [], "test": []}
    with pytest.raises(UserError, match=r"early_size=\(48, 32\): height and width must be positive multiples"):
        build_dataloaders(splits, input_size=(64, 64), early_size=(48, 32), early_epochs=1)


def test_a_recipes_splits_are_made_again_without_touching_gin(tmp_path, aiseg_root, folder_root):
    """lib/ reads a recipe's roots, split and seed as data: twice in one process, beside a
    configuration already parsed (and locked) by an entry script."""
    import gin

    from lib.training.config import parse
    from lib.training.data import DataRecipe, recipe_splits

    (tmp_path / "base.gin").write_text(f"make_splits.roots = ['{aiseg_root}', '{folder_root}']\n")
    (tmp_path / "r.gin").write_text(f"include '{tmp_path / 'base.gin'}'\nmake_splits.split = (0.5, 0.25, 0.25)\n")
    parse([], ["train.epochs = 3"])
    first, again = recipe_splits([str(tmp_path / "r.gin")]), recipe_splits([str(tmp_path / "r.gin")])
    plain = DataRecipe((str(aiseg_root), str(folder_root)), (0.5, 0.25, 0.25), 0).make()[0]
    assert first == again == plain and gin.query_parameter("train.epochs") == 3


# What a mask's values mean (lib.training.masks.read_mask): one rule for every layout

PERSON = np.zeros((6, 8), bool)
PERSON[1:5, 2:6] = True
EDGE = np.array([[0, 30, 60, 90, 120, 200, 255, 255]] * 6, np.uint8)  # a soft matte's edge


@pytest.mark.parametrize(
    "values, person",
    [
        (PERSON * np.uint8(255), PERSON),  # 0/255
        (PERSON * np.uint8(1), PERSON),  # 0/1 label maps
        (PERSON * np.uint8(100), PERSON),  # 0/100: a hard mask of another value is that value
        (PERSON * np.uint8(7), PERSON),
        (PERSON * np.uint16(65535), PERSON),  # 16-bit
        (EDGE, EDGE >= 128),  # soft: the person from half of full scale on
        (EDGE // 3, np.zeros((6, 8), bool)),  # soft 0..85: never half of 255, read empty (and warned about)
        (np.zeros((6, 8), np.uint8), np.zeros((6, 8), bool)),
        (np.full((6, 8), 100, np.uint8), np.ones((6, 8), bool)),  # one value, not 0: all person
    ],
    ids=["0/255", "0/1", "0/100", "0/7", "16-bit", "soft", "soft 0..85", "empty", "all 100"],
)
def test_mask_values_are_read_by_one_rule(tmp_path, values, person):
    cv2.imwrite(str(tmp_path / "m.png"), values)
    assert np.array_equal(read_mask(tmp_path / "m.png", "folder"), person.astype(np.uint8))


@pytest.mark.parametrize(
    "style, says",
    [
        ("grey100", ["masks in ROOT hold 0 and 100, not 0/255: read as hard masks, 100 the person"]),
        ("soft100", ["8 of its 8 masks in ROOT hold values 0..100, not 0/255: soft masks are the person where they"]),
        ("blank", ["every mask in ROOT is empty (no person pixel in its 8 masks)"]),
        (None, []),
    ],
)
def test_a_roots_masks_are_surveyed_and_surprises_named(tmp_path, style, says):
    root = make_folder(tmp_path / "root", n=8)
    if style:
        restyle_masks(root, style)
    notes = scan_root(root).notes
    assert len(notes) == len(says)
    for note, start in zip(notes, says, strict=True):
        assert note.startswith(start.replace("ROOT", str(root))), note


def test_the_survey_reads_a_sample_of_a_large_root(tmp_path):
    root = restyle_masks(make_folder(tmp_path / "root", n=12), "blank")
    pairs = scan_root(root, check=False).pairs
    assert mask_survey(str(root), pairs, limit=4)[0].startswith(
        f"every mask in {root} is empty (no person pixel in the 4 of its 12 masks checked)"
    )
    cv2.imwrite(str(pairs[5].mask_path), np.full((80, 60), 255, np.uint8))  # one person, not in the sample
    assert mask_survey(str(root), pairs, limit=12) == []


def test_names_that_are_not_utf8_are_read_listed_and_cached(tmp_path):
    """b'caf\\xe9-0000.jpg' on disk: OpenCV would crash the process on such a name."""
    root = latin1_names(make_folder(tmp_path / "root", n=8))
    scan = scan_root(root)
    assert len(scan.pairs) == 8 and all(LATIN1 in p.image for p in scan.pairs) and not scan.bad
    image, mask = read_pair(scan.pairs[0])
    assert image.shape == (80, 60, 3) and mask.sum() > 0
    splits, _ = make_splits(roots=[str(root)], split=(0.5, 0.25, 0.25))
    save_splits(tmp_path / "run", splits)
    assert load_splits(tmp_path / "run") == splits  # the same bytes back
    assert b"caf\xe9-" in (tmp_path / "run" / "splits" / "train.tsv").read_bytes()
    cached = DecodedCache(tmp_path / "cache", long_side=64).load(scan.pairs[0])
    assert cached[0].shape[:2] == (64, 48)


def test_a_shipped_models_split_leaves_out_a_root_the_clone_lacks(tmp_path, capsys):
    """A root this project makes (labelled groups) is not in a fresh clone: the other roots' test
    photos are scored (each root is split on its own), with a note; with no root here, the error."""
    from lib.training.data import DataRecipe

    here = tmp_path / "here"
    here.mkdir()
    recipe = DataRecipe((str(here), str(tmp_path / "made_by_labeller")))
    assert recipe.without_missing_roots().roots == (str(here),)
    assert "made_by_labeller is not here" in capsys.readouterr().out
    nothing = DataRecipe((str(tmp_path / "a"), str(tmp_path / "b")))
    assert nothing.without_missing_roots() == nothing
