"""Pictures for people: prediction grids, error maps and training curves, in the format of the name's
suffix (.png, .jpg, .webp, ...; the curves are PNG)."""

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lib.live.compose import blend, blurred, soften  # noqa: E402
from lib.live.files import write_atomic, write_image  # noqa: E402
from lib.live.preprocess import to_bgr  # noqa: E402

GUTTER = 128  # the neutral grey between a mosaic's tiles


def _gray3(mask: np.ndarray) -> np.ndarray:
    """A probability or a target as grey; a target's unknown pixels (255) mid-grey with a tint."""
    m = (np.clip(mask, 0, 1) * 255).astype(np.uint8)
    out = np.dstack([m, m, m])
    out[mask == 255] = (110, 90, 140)
    return out


def error_map(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB: grey = correct person, red = false person (fp), blue = missed person (fn), purple =
    unknown pixels (not scored)."""
    pred, known, truth = prob > 0.5, truth != 255, truth == 1
    out = np.zeros((*truth.shape, 3), np.uint8)
    out[pred & truth] = (170, 170, 170)
    out[pred & ~truth & known] = (230, 40, 40)
    out[~pred & truth] = (40, 80, 230)
    out[~known] = (110, 90, 140)
    return out


def prediction_row(image_rgb: np.ndarray, truth: np.ndarray, prob: np.ndarray, with_errors: bool = False) -> np.ndarray:
    """image | truth | prediction | blurred-background preview (| error map)."""
    alpha = soften(prob, image_rgb.shape[:2], feather=0.01)
    tiles = [image_rgb, _gray3(truth), _gray3(prob), blend(image_rgb, blurred(image_rgb), alpha)]
    if with_errors:
        tiles.append(error_map(prob, truth))
    return np.hstack(tiles)


def save_grid(path: Path, rows: list[np.ndarray], titles: list[str] | None = None, row_height: int = 256) -> None:
    """Stack rows (each resized to one height) into one picture (save_picture), with an optional caption per row."""
    resized = []
    for i, row in enumerate(rows):
        scale = row_height / row.shape[0]
        row = cv2.resize(row, (round(row.shape[1] * scale), row_height), interpolation=cv2.INTER_AREA)
        if titles:
            cv2.putText(row, titles[i], (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1, cv2.LINE_AA)
        resized.append(row)
    width = max(r.shape[1] for r in resized)
    resized = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in resized]
    save_picture(path, np.vstack(resized))


def mosaic(tiles: list[np.ndarray], row_height: int = 300, per_row: int = 3, gap: int = 4) -> np.ndarray:
    """Tiles of any aspect in order, in rows that each fill the picture's width exactly (as a photo
    gallery lays them out), on neutral grey gutters `gap` wide: no black holes where aspects differ.

    The picture is about `per_row` tiles wide; where each row ends is chosen so row heights stay near
    `row_height` (a row of wide tiles gets lower, one of tall tiles higher)."""
    widths = [t.shape[1] * row_height / t.shape[0] for t in tiles]  # each tile at row_height
    n = len(tiles)
    width = round(min(per_row * float(np.mean(widths)) + (per_row - 1) * gap, sum(widths) + (n - 1) * gap))

    def height(i: int, j: int) -> float:  # of a row of tiles i..j-1 filling the width
        return row_height * (width - gap * (j - i - 1)) / sum(widths[i:j])

    cost, start = [0.0] + [np.inf] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            here = cost[i] + np.log(height(i, j) / row_height) ** 2
            if here < cost[j]:
                cost[j], start[j] = here, i
    rows, j = [], n
    while j:
        rows.insert(0, (start[j], j))
        j = start[j]
    picture = [_gutter(gap, width)]
    for i, j in rows:
        h = max(1, round(height(i, j)))
        scale = (width - gap * (j - i - 1)) / sum(widths[i:j])
        edges = np.round(np.cumsum([0, *widths[i:j]]) * scale).astype(int)  # the tiles' widths sum exactly
        row = []
        for k, tile in enumerate(tiles[i:j]):
            size = (int(edges[k + 1] - edges[k]), h)
            shrink = cv2.INTER_AREA if size[0] < tile.shape[1] else cv2.INTER_LINEAR
            if k:
                row.append(_gutter(h, gap))
            row.append(cv2.resize(tile, size, interpolation=shrink))
        picture += [np.hstack(row), _gutter(gap, width)]
    return np.pad(np.vstack(picture), ((0, 0), (gap, gap), (0, 0)), constant_values=GUTTER)


def _gutter(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), GUTTER, np.uint8)


def save_picture(path: Path, image_rgb: np.ndarray, flag: str | None = None) -> None:
    """An RGB picture in the format of `path`'s suffix (.png, .jpg/.jpeg, .webp, ...: whatever OpenCV
    encodes), through lib.live.files.write_image: any file name (cv2.imwrite crashes on one that is not
    UTF-8; a run folder or a --json name may be one), and a write that fails leaves no half picture.
    UserError naming `flag` and the file for a suffix OpenCV cannot encode (see check_picture_name)."""
    write_image(path, to_bgr(image_rgb), flag=flag)


def save_curves(path: Path, history: list[dict]) -> None:
    """Training loss, validation loss and validation IoU per epoch."""
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_iou.plot(epochs, [h["val_iou"] for h in history], marker="o", color="tab:green")
    ax_iou.set(xlabel="epoch", ylabel="person IoU", title="validation IoU")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
