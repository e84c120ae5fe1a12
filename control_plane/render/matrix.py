"""Payload → QR module matrix, with segno."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import segno


class PayloadTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Matrix:
    """Dark modules of a QR symbol, without its quiet zone; `dark[y][x]`."""

    dark: tuple[tuple[bool, ...], ...]
    version: int
    error_correction: str

    @property
    def width(self) -> int:
        return len(self.dark)


# segno spends most of its ~6 ms choosing the mask; a design check followed by renders in three formats
# encodes the same payload again and again.
@lru_cache(maxsize=1024)
def qr_matrix(payload: str, error_correction: str) -> Matrix:
    # UTF-8 for byte mode: what phones assume when no ECI is given (segno would otherwise prefer Latin-1).
    # boost_error stays off so that the chosen level is exactly the level printed.
    try:
        qr = segno.make_qr(payload, error=error_correction.lower(), encoding="utf-8", boost_error=False)
    except segno.DataOverflowError:
        raise PayloadTooLarge(f"the payload does not fit in a QR code at error correction {error_correction}") \
            from None
    dark = tuple(tuple(bool(module) for module in row) for row in qr.matrix)
    return Matrix(dark, int(qr.version), error_correction)


def is_finder(matrix: Matrix, x: int, y: int) -> bool:
    """Inside one of the three 7×7 finder patterns ("eyes"), which are drawn as whole shapes."""
    far = matrix.width - 7
    return (x < 7 and y < 7) or (x >= far and y < 7) or (x < 7 and y >= far)
