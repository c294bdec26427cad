"""Average the weights of checkpoints of one network into one checkpoint (model soup, WiSE-FT).

    python -m scripts.average_weights --ckpt experiments/exp2/weights/last.pt --ckpt experiments/exp3/weights/last.pt \\
        --out experiments/soup.pt
    python -m scripts.average_weights --ckpt models/lite.pt --weight 0.5 --ckpt experiments/soup.pt --weight 0.5 \\
        --out experiments/wise.pt

Fine-tunes of one start average into a network that is often better than each on data none was
tuned for; a fine-tune averaged with its start keeps much of both (lib.training.model.average_checkpoints).
The result is a plain checkpoint: score it with evaluate.py, ship it with scripts.ship_model (the
last --ckpt's run folder gives the calibration photos). Nothing existing is overwritten.
"""

import argparse
from pathlib import Path

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack)
from lib.training.model import average_checkpoints, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", required=True, help="a .pt checkpoint (two or more)")
    parser.add_argument("--weight", action="append", type=float, help="its weight (default: all equal)")
    parser.add_argument("--out", required=True, help="the averaged .pt to write")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        raise UserError(f"--out {out} exists already: choose another name (nothing is overwritten)")
    if out.suffix != ".pt":
        raise UserError(f"--out {out}: expected a .pt file name")
    model, info = average_checkpoints(args.ckpt, args.weight)
    save_checkpoint(out, model, info)
    for source in info.meta["averaged_from"]:
        print(f"{source['weight']:.3f}  {source['checkpoint']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_cli(main)
