"""Finding every person in the frame: unknown pixels (ignore/ masks), people composited into scenes,
landscape batches, evaluation-only roots and the false-person share on empty scenes."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import make_aisegment, make_folder

import lib
from lib.live.preprocess import Preprocess
from lib.training import metrics
from lib.training.config import parse
from lib.training.copy_paste import SceneComposer, plate_split
from lib.training.cutout import cut_person, match_colour, turn
from lib.training.data import EpochSampler, SegmentationDataset, build_dataloaders, decode_key, make_splits, read_pair
from lib.training.losses import build_loss
from lib.training.masks import IGNORE, read_target
from lib.training.pairs import scan_root
from lib.training.scoring import false_person, score
from lib.training.splits import read_split, write_split
from lib.training.transforms import TrainTransform


def add_ignore(root: Path, band: slice = slice(0, 10)) -> None:
    """ignore/<name>.png for every photo of a folder root: the top rows unknown."""
    (root / "ignore").mkdir(exist_ok=True)
    for mask in sorted((root / "masks").glob("*.png")):
        unknown = np.zeros(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape, np.uint8)
        unknown[band] = 255
        cv2.imwrite(str(root / "ignore" / mask.name), unknown)


# ---- unknown pixels ---------------------------------------------------------------------------


def test_ignore_masks_are_found_read_and_kept_in_split_lists(tmp_path):
    root = make_folder(tmp_path / "f", n=4)
    add_ignore(root)
    pairs = scan_root(root).pairs
    assert all(p.ignore == f"ignore/{Path(p.image).stem}.png" for p in pairs)
    target = read_target(pairs[0])
    assert (target[:10] == IGNORE).all() and set(np.unique(target[10:])) <= {0, 1}
    write_split(tmp_path / "s.tsv", pairs)
    assert read_split(tmp_path / "s.tsv") == pairs
    plain = make_folder(tmp_path / "plain", n=2)  # a root without ignore/ works as before
    assert all(p.ignore == "" for p in scan_root(plain).pairs)
    assert set(np.unique(read_target(scan_root(plain).pairs[0]))) <= {0, 1}


def test_an_ignore_mask_of_another_size_is_left_out_and_named(tmp_path):
    root = make_folder(tmp_path / "f", n=3)
    add_ignore(root)
    cv2.imwrite(str(root / "ignore" / "0001.png"), np.zeros((5, 5), np.uint8))
    scan = scan_root(root)
    assert len(scan.pairs) == 2
    assert any("ignore/0001.png: ignore mask is 5x5 but its image is 60x80" in b for b in scan.bad)


def test_scores_leave_unknown_pixels_out():
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    truth[:, :3] = IGNORE
    prob = (truth == 1).astype(np.float32)
    perfect = metrics.confusion_np(prob, truth)
    prob[:, :3] = 1.0  # person said in the unknown band: not counted either way
    assert np.array_equal(metrics.confusion_np(prob, truth), perfect)
    assert perfect[3] == 20 * 17 - 100  # tn counts only known background
    logits = torch.from_numpy(np.where(prob > 0.5, 5.0, -5.0)).float()[None, None]
    assert torch.equal(
        metrics.confusion(logits, torch.from_numpy(truth).float()[None, None])[0], torch.from_numpy(perfect)
    )
    assert metrics.boundary_f(prob > 0.5, truth) == pytest.approx(1.0)


def test_losses_ignore_unknown_pixels_and_send_them_no_gradient():
    loss_fn = build_loss({"bce": 1.0, "dice": 0.5, "lovasz": 0.5})
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    target[:, :, :4] = IGNORE
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    loss = loss_fn(logits, target)
    loss.backward()
    assert logits.grad[:, :, :4].abs().max() == 0 and logits.grad[:, :, 4:].abs().max() > 0
    changed = logits.detach().clone()
    changed[:, :, :4] = 50.0
    assert torch.isclose(loss_fn(changed, target), loss.detach())


def test_evaluation_leaves_unknown_pixels_out(tmp_path):
    root = make_folder(tmp_path / "f", n=3)
    add_ignore(root, slice(0, 20))
    pairs = scan_root(root).pairs

    class Oracle:  # the truth itself, plus person everywhere in the unknown band
        def predict_many(self, frames, tta=False):
            out = []
            for pair in pairs[: len(frames)]:
                target = read_target(pair)
                out.append(((target == 1) | (target == IGNORE)).astype(np.float32))
            return out

    result = score(Oracle(), pairs[:1], batch_size=1, num_workers=0, progress=False)
    assert result["iou"] == pytest.approx(1.0) and result["loss"] < 1e-5


# ---- landscape batches and composed scenes -----------------------------------------------------


def test_batches_have_one_orientation_and_both_occur():
    sampler = EpochSampler(40, seed=3, batch_size=4, landscape_share=0.5)
    sampler.set_epoch(2)
    keys = list(sampler)
    decoded = [decode_key(k, 40) for k in keys]
    assert sorted(i for _, _, i in decoded) == list(range(40)) and {e for e, _, _ in decoded} == {2}
    per_batch = [{land for _, land, _ in decoded[b : b + 4]} for b in range(0, 40, 4)]
    assert all(len(b) == 1 for b in per_batch) and {True, False} == set().union(*per_batch)
    assert list(sampler) == keys  # the same again: a function of (seed, epoch)


def test_a_landscape_key_gives_a_landscape_sample(tmp_path):
    pairs = scan_root(make_aisegment(tmp_path / "a", n=4)).pairs
    dataset = SegmentationDataset(pairs, TrainTransform(Preprocess(input_size=(64, 32))), seed=1)
    assert dataset[0]["image"].shape == (3, 64, 32)
    assert dataset[len(pairs)]["image"].shape == (3, 32, 64)  # (epoch 0 * 2 + landscape) * n + index
    assert dataset[2 * len(pairs)]["image"].shape == (3, 64, 32)  # epoch 1, portrait


def make_composer(pairs, plates=(), **kwargs):
    return SceneComposer(lambda i: read_pair(pairs[i]), len(pairs), list(plates), **kwargs)


def test_pasted_people_are_labelled_and_the_target_is_the_union(tmp_path):
    pairs = scan_root(make_folder(tmp_path / "f", n=6, size=(120, 90))).pairs
    image, target = read_pair(pairs[0])
    canvas, canvas_target = image.copy(), target.copy()
    composer = make_composer(pairs, height_range=(0.3, 0.6))
    for seed in range(8):
        composer.paste_someone(canvas, canvas_target, np.random.default_rng(seed), index=0)
    assert canvas_target.sum() > target.sum()  # more person than before
    changed = np.abs(canvas.astype(int) - image.astype(int)).sum(2) > 40
    assert (canvas_target[changed] == 1).mean() > 0.8  # what was pasted is mostly person-labelled
    # the sample's own person stays person, except where someone stands in front (also person)
    assert (canvas_target[target == 1] == 1).all()


def test_composition_is_reproducible_and_comes_out_at_the_asked_size(tmp_path):
    pairs = scan_root(make_folder(tmp_path / "f", n=6)).pairs
    plates = tmp_path / "plates"
    plates.mkdir()
    for i in range(3):
        cv2.imwrite(str(plates / f"street_{i:05d}.jpg"), np.full((50, 90, 3), 40 * i, np.uint8))
    transform = TrainTransform(Preprocess(input_size=(64, 32)))
    transform.composer = make_composer(pairs, sorted(plates.iterdir()), paste_prob=1.0, zoom_out_prob=0.5)
    image, target = read_pair(pairs[1])
    outs = [transform.compose(image, target, seed=s, landscape=s % 2 == 1, index=1) for s in range(6)]
    again = [transform.compose(image, target, seed=s, landscape=s % 2 == 1, index=1) for s in range(6)]
    for s, ((a, t), (b, u)) in enumerate(zip(outs, again, strict=True)):
        assert a.shape[:2] == t.shape == ((32, 64) if s % 2 else (64, 32))
        assert np.array_equal(a, b) and np.array_equal(t, u)
        assert set(np.unique(t)) <= {0, 1, IGNORE}


def test_a_turned_person_keeps_all_of_itself_and_its_label():
    patch = np.zeros((40, 10, 3), np.uint8)
    patch[:10] = 255  # the head: at the top
    alpha = np.ones((40, 10), np.float32)
    sideways, sideways_alpha = turn(patch, alpha, 90)
    assert sideways_alpha.shape == (10, 40)  # the canvas grew to hold it, nothing cut off
    assert sideways_alpha.sum() == pytest.approx(alpha.sum(), rel=0.05)
    upside_down, _ = turn(patch, alpha, 180)
    assert upside_down[-10:, :, 0].mean() > 200 and upside_down[:10, :, 0].mean() < 50  # head at the bottom


def test_people_are_pasted_at_angles_and_decoys_are_background(tmp_path):
    pairs = scan_root(make_folder(tmp_path / "f", n=6, size=(120, 90))).pairs
    image, target = read_pair(pairs[0])
    empty = np.zeros_like(target)
    # a whole person (not cut by its photo's edge) turned: the label follows the pasted pixels
    turned = make_composer(pairs, height_range=(0.3, 0.6), turn_prob=1.0)
    checked = 0
    for seed in range(6):
        canvas, canvas_target = image.copy(), empty.copy()
        turned.paste_someone(canvas, canvas_target, np.random.default_rng(seed), index=0)
        changed = np.abs(canvas.astype(int) - image.astype(int)).sum(2) > 40
        if changed.sum() > 20:  # a turned edge is interpolated twice: a wider soft rim than a plain paste's
            assert (canvas_target[changed] == 1).mean() > 0.7
            checked += 1
    assert checked >= 3  # most seeds pasted someone, so the check above ran
    # decoys: a person's outline filled with people-free scenery changes pixels, never the label
    root = make_folder(tmp_path / "small", n=6, size=(120, 90))
    for mask in (root / "masks").glob("*.png"):  # small people: photos with people-free parts to fill from
        small = np.zeros((120, 90), np.uint8)
        small[5:35, 5:20] = 255
        cv2.imwrite(str(mask), small)
    decoys = make_composer(scan_root(root).pairs, height_range=(0.2, 0.4), decoy_prob=1.0)
    pasted = 0
    for seed in range(12):
        canvas, canvas_target = image.copy(), target.copy()
        decoys.paste_someone(canvas, canvas_target, np.random.default_rng(seed), index=0)
        assert (canvas_target[target == 0] == 0).all()
        pasted += int((np.abs(canvas.astype(int) - image.astype(int)).sum(2) > 40).sum() > 0)
    assert pasted > 0


def test_a_sideways_sample_turns_its_own_photo_and_target_together():
    image = np.zeros((40, 40, 3), np.uint8)
    target = np.zeros((40, 40), np.uint8)
    image[:10], target[:10] = 200, 1  # the person along the top edge

    def as_is(image, target, size, rng):
        return image, target

    composer = SceneComposer(lambda i: (image, target), 2, [], paste_prob=0.0, zoom_out_prob=0.0, sideways_prob=1.0)
    for seed in range(6):
        out, out_target = composer(image, target, (40, 40), np.random.default_rng(seed), as_is, index=0)
        assert not out_target[:10].all() and out_target.sum() == target.sum()  # moved, nothing lost
        assert np.array_equal(out[..., 0] == 200, out_target == 1)  # the label went with the pixels
    unturned = SceneComposer(lambda i: (image, target), 2, [], paste_prob=0.0, zoom_out_prob=0.0)
    assert np.array_equal(unturned(image, target, (40, 40), np.random.default_rng(0), as_is, index=0)[1], target)


def test_a_person_cut_by_its_photos_edge_keeps_the_cut_on_the_frames_edge():
    image = np.full((100, 60, 3), 90, np.uint8)
    target = np.zeros((100, 60), np.uint8)
    target[40:, 15:45] = 1  # head and shoulders: cut at the bottom
    cut = cut_person(image, target)
    assert cut.edges == (False, True, False, False)
    for seed in range(10):
        top, _ = SceneComposer.place(50, 20, 120, 160, cut.edges, np.random.default_rng(seed))
        assert top + 50 == 120


def test_colour_matching_moves_a_patch_toward_the_scene():
    patch = np.full((20, 20, 3), (200, 60, 60), np.uint8)
    scene = np.full((40, 40, 3), (40, 60, 160), np.uint8)
    moved = match_colour(patch, scene, 0.8)
    assert np.abs(moved.astype(int) - scene[:20, :20]).mean() < np.abs(patch.astype(int) - scene[:20, :20]).mean()
    assert np.array_equal(match_colour(patch, scene, 0.0), patch)


def test_plate_split_holds_out_whole_sequences(tmp_path):
    for seq in ("bear", "camel", "dog", "goat", "rhino"):
        for frame in range(3):
            cv2.imwrite(str(tmp_path / f"{seq}_{frame:05d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    train, held = plate_split([str(tmp_path)], holdout_every=4)
    assert {p.stem.split("_")[0] for p in held} == {"goat"} and len(train) == 12
    assert plate_split([str(tmp_path)], holdout_every=0)[1] == []
    with pytest.raises(lib.live.errors.UserError, match="plate_split.folders: .*nowhere is not a folder"):
        plate_split([str(tmp_path / "nowhere")])


def test_loader_bindings_are_checked(tmp_path):
    splits, _ = make_splits(roots=[str(make_folder(tmp_path / "f", n=6))])
    with pytest.raises(lib.live.errors.UserError, match="landscape_share=1.5: expected a share between 0 and 1"):
        build_dataloaders(splits, input_size=(64, 64), num_workers=0, landscape_share=1.5)


# ---- evaluation-only roots and empty scenes, in a training run ---------------------------------


def test_false_person_share_on_empty_frames(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"empty_{i}.jpg")
        cv2.imwrite(str(paths[-1]), np.full((20, 30, 3), 10, np.uint8))

    class HalfPerson:
        def predict_many(self, frames, tta=False):
            return [
                np.where(np.arange(f.shape[1]) < f.shape[1] // 2, 0.9, 0.1)[None].repeat(f.shape[0], 0) for f in frames
            ]

    result = false_person(HalfPerson(), paths)
    assert result == {"n": 3, "share": pytest.approx(0.5), "worst": pytest.approx(0.5)}


def test_a_run_scores_evaluation_roots_and_empty_scenes_every_epoch(tmp_path):
    train_roots = [make_aisegment(tmp_path / "a", n=8), make_folder(tmp_path / "f", n=8)]
    add_ignore(train_roots[1])
    scenes = make_folder(tmp_path / "scenes", n=3, size=(48, 96), seed=7)
    plates = tmp_path / "plates"
    plates.mkdir()
    for seq in ("a", "b", "c", "d"):
        cv2.imwrite(str(plates / f"{seq}_00000.jpg"), np.full((40, 70, 3), 30, np.uint8))
    parse(
        [],
        [
            "build_model.arch = 'Unet'",
            "build_model.encoder_name = 'resnet18'",
            "build_model.model_kwargs = {'decoder_channels': (16, 16, 8, 8, 8)}",
            "build_dataloaders.input_size = (64, 64)",
            "build_dataloaders.batch_size = 2",
            "build_dataloaders.num_workers = 0",
            "build_dataloaders.scenes = True",
            "build_dataloaders.landscape_share = 0.5",
            f"plate_split.folders = ['{plates}']",
            f"make_splits.roots = {[str(r) for r in train_roots]!r}",
            "make_splits.split = (0.5, 0.25, 0.25)",
            f"train.eval_roots = ['{scenes}']",
            f"train.run_root = '{tmp_path / 'exps'}'",
            "train.epochs = 2",
            "train.log_with = ()",
            "train.export_formats = ()",
        ],
    )
    run_dir = lib.training.train.train()
    result = json.loads((run_dir / "metrics.json").read_text())
    for epoch in result["history"]:
        assert 0 <= epoch["scene_iou"] <= 1 and 0 <= epoch["false_person"] <= 1
        assert epoch["iou_scenes"] == epoch["scene_iou"]  # one root: per root equals overall
    assert set(result["scenes"]) >= {"scene_iou", "false_person"}
    samples = cv2.imread(str(run_dir / "pics" / "train_samples.png"))
    assert samples is not None and samples.shape[0] == 2 * 64 + 2 * 64  # portrait and landscape rows, each twice
    assert all(p.ignore for p in read_split(run_dir / "splits" / "train.tsv") if "/f/" in p.root + "/")
