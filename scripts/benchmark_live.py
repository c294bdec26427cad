"""The live table: our models and the peers (MediaPipe, Google Meet, PP-HumanSeg) through webcam.py's own loop.

    python -m scripts.benchmark_live --ckpt models/lite.onnx --ckpt models/lite_int8.onnx
    python -m scripts.benchmark_live --ckpt models/lite_int8.onnx --data samples/portraits --stills 4 --no-mediapipe

One clip of test photos (the test split of --gin, default gin/lite.gin; or --data roots), each held
still and then moved by hand (lib/tools/livebench.py). For each model and setting: frames per second end
to end at 640x480 and 1280x720 (decoded frames in, blurred frames out, as to a window), model ms,
CPU ms per frame (all threads), and on the same clip at 640x480: person IoU, boundary F, flicker (label flips
where the truth does not change) with the camera still and moving, and the share of frames the
model ran on. Prints a markdown table; the tflite peers run where ai-edge-litert is installed.
"""

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import cv2

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.live.loop import Options
from lib.tools.compare import load_peers, select_photos
from lib.tools.livebench import compositing_ms, make_clip, quality, read_stills, speed
from lib.tools.peers import PEER_FILES as PEERS

SETTINGS = {  # name -> Options changes; "defaults" is webcam.py with no flags
    "defaults": {},
    "no smoothing": {"smooth": False},
    "refine": {"refine": True},
    "change gate": {"change_threshold": 1.5},
    "2 model workers": {"workers": 2},
    "1 thread": {"threads": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[], help="our model file (repeatable)")
    parser.add_argument("--mediapipe", default=PEERS["mediapipe"], help="MediaPipe's .tflite (needs ai-edge-litert)")
    parser.add_argument("--meet", default=PEERS["meet"], help="Google Meet's .tflite (needs ai-edge-litert)")
    parser.add_argument("--pphumanseg", default=PEERS["pphumanseg"], help="PP-HumanSeg's .onnx")
    parser.add_argument("--no-peers", "--no-mediapipe", action="store_true", help="our models alone")
    parser.add_argument("--gin", action="append", help="recipe whose test split gives the photos (gin/lite.gin)")
    parser.add_argument("--data", action="append", help="or: every pair under these roots")
    parser.add_argument("--stills", type=int, default=16, help="photos in the clip, spread over the roots (16)")
    parser.add_argument("--per-still", type=int, default=24, help="frames per photo: half still, half moving (24)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of: {', '.join(SETTINGS)}")
    parser.add_argument("--repeats", type=int, default=2, help="speed runs per row; the best is kept (2)")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or args.stills < 2 or args.per_still < 4:
        raise UserError(f"--settings {', '.join(unknown)}: expected some of {', '.join(SETTINGS)}" if unknown
                        else "--stills 2 or more and --per-still 4 or more")  # fmt: skip
    pairs, what = select_photos(args.data, args.gin or ["gin/lite.gin"], [], "test", None)
    pairs = pairs[:: max(1, len(pairs) // args.stills)][: args.stills]
    stills = read_stills(pairs)
    clips = {size: make_clip(stills, size, args.per_still) for size in ((640, 480), (1280, 720))}
    models = [(Path(c).name, Options(ckpt=c), None) for c in args.ckpt]
    if not args.no_peers:
        peers = {"mediapipe": args.mediapipe, "meet": args.meet, "pphumanseg": args.pphumanseg}
        models += [(label, Options(), peer) for label, peer in load_peers(peers, threads=os.cpu_count())]
    if not models:
        raise UserError("nothing to measure: give --ckpt, or make a peer runnable (pip install ai-edge-litert)")

    print(f"$ python -m scripts.benchmark_live {shlex.join(sys.argv[1:])}")
    print(f"clip: {len(stills)} photos from {what}, {args.per_still} frames each (half still, half hand-held); "
          f"{os.cpu_count()} CPU cores\n")  # fmt: skip
    print("| model | setting | FPS 640x480 | FPS 1280x720 | model ms | CPU ms/frame | IoU | boundary F "
          "| flicker % still | flicker % moving | model runs % |")  # fmt: skip
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = []
    for name, base, segmenter in models:
        for setting in settings if segmenter is None else [s for s in settings if s in ("defaults", "change gate")]:
            opts = replace(base, **SETTINGS[setting])
            vga, hd = (speed(opts, clips[s].frames, segmenter, args.repeats) for s in ((640, 480), (1280, 720)))
            q = quality(opts, clips[(640, 480)], segmenter)
            rows.append({"model": name, "setting": setting, "640x480": vga, "1280x720": hd, "quality": q})
            cells = [name, setting, f"{vga['fps']:.1f}", f"{hd['fps']:.1f}", f"{vga['model_ms']:.1f}"]
            cells += [f"{vga['cpu_ms_per_frame']:.1f}", f"{q['iou']:.4f}", f"{q['boundary_f']:.4f}"]
            cells += [f"{100 * q['flicker_still']:.3f}", f"{100 * q['flicker_moving']:.3f}"]
            cells += [f"{100 * q['model_calls']:.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    small = cv2.resize(clips[(640, 480)].truths[0].astype("float32"), (256, 192))  # a model-sized probability
    costs = {f"{w}x{h}": [compositing_ms(clips[(w, h)].frames[0], small, refine) for refine in (False, True)]
             for w, h in clips}  # fmt: skip
    print("\nblur compositing per frame (ms), plain / refined: "
          + ", ".join(f"{k}: {a:.2f} / {b:.2f}" for k, (a, b) in costs.items()))  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"photos": what, "rows": rows, "compositing_ms": costs}, indent=2))


if __name__ == "__main__":
    run_cli(main)
