"""Range checks for the values users set (gin parameters and flags): one line naming the value."""

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
) -> None:
    """`name`=value must be a number (a whole one if `integer`) >= low, <= high, > above; None if `optional`."""
    if value is None and optional:
        return
    kind = "a whole number" if integer else "a number"
    bounds = [f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else ""]
    bounds += [f"<= {high:g}" if high is not None else ""]
    wanted = " ".join([kind, " and ".join(b for b in bounds if b)]).strip() + (" or None" if optional else "")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    bad = not number or not math.isfinite(value) or (integer and not float(value).is_integer())
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    if bad or (above is not None and value <= above):
        raise UserError(f"{name}={value!r}: expected {wanted}")
