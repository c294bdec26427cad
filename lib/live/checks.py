"""Range checks for every value users set (flags, gin bindings, options): one home for the rule,
one line naming the value for each mistake."""

import math

from lib.live.errors import UserError


def check_number(
    name: str,
    value,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    optional: bool = False,
    expected: str | None = None,
    typed: bool = False,
) -> None:
    """`name`=value must be a finite number (a whole one if `integer`) >= low, <= high, > above; None if `optional`.

    expected: the words after "expected" where the bounds alone say less than the unit does ("a
    share between 0 and 1"). typed: the value as typed after a flag (`--feather -1.0`), not as a
    binding (`train.lr=-1`).
    """
    if value is None and optional:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    bad = not number or not math.isfinite(value) or (integer and not float(value).is_integer())
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    if not bad and (above is None or value > above):
        return
    if expected is None:
        kind = "a whole number" if integer else "a number"
        bounds = [f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else ""]
        bounds += [f"<= {high:g}" if high is not None else ""]
        expected = " ".join([kind, " and ".join(b for b in bounds if b)]).strip() + (" or None" if optional else "")
    raise UserError(f"{name} {value}: expected {expected}" if typed else f"{name}={value!r}: expected {expected}")
