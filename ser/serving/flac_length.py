"""The length of a FLAC whose header does not say it, read off its last frame header.

Streaming encoders write STREAMINFO total_samples = 0 ("unknown"), which is legal FLAC, but
libsndfile then fails to decode the stream's last, partial block ("psf_fseek() failed").
Every FLAC frame header carries its first sample's position (or its frame number, for fixed
block sizes) and its block size, guarded by a CRC-8, so the last valid header near the end
of the file gives the total. `total_candidates` yields the totals of valid-looking headers
from the end backwards (a false sync in audio data is checked by decoding); `with_total`
writes one into a copy of STREAMINFO.

    for total in total_candidates(data):
        fixed = with_total(data, total)  # decode it; on failure try the next candidate
"""

from __future__ import annotations

from collections.abc import Iterator

STREAMINFO = slice(18, 26)  # "fLaC" + block header (8 bytes) + block sizes and frame sizes (10 bytes)
_TOTAL_MASK = (1 << 36) - 1
_SCAN_BYTES = 1 << 20  # the last frame header lies within the last frame, far below 1 MiB


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _utf8_number(data: bytes, at: int) -> tuple[int, int] | None:
    """FLAC's UTF-8-like coded number at `at`: (value, bytes used), or None when malformed."""
    if at >= len(data):
        return None
    first = data[at]
    if first == 0xFF:
        return None
    length = next((n for n in range(7) if not first & (0x80 >> n)), 7)
    if length == 1 or length > 7:
        return None
    if length == 0:
        return first, 1
    value = first & (0x7F >> length) if length < 7 else 0
    for i in range(1, length):
        if at + i >= len(data) or data[at + i] & 0xC0 != 0x80:
            return None
        value = (value << 6) | (data[at + i] & 0x3F)
    return value, length


def _block_size(code: int, data: bytes, at: int) -> tuple[int, int] | None:
    """(block size, extra header bytes) for a frame header's block-size code."""
    if code == 1:
        return 192, 0
    if 2 <= code <= 5:
        return 576 << (code - 2), 0
    if code == 6:
        return (data[at] + 1, 1) if at < len(data) else None
    if code == 7:
        return (int.from_bytes(data[at : at + 2], "big") + 1, 2) if at + 1 < len(data) else None
    return (256 << (code - 8), 0) if code >= 8 else None


def _frame_end(data: bytes, pos: int, max_block: int) -> int | None:
    """The last sample + 1 that the frame header at `pos` covers, or None when it is no valid header."""
    if pos + 4 >= len(data) or data[pos + 3] & 0x01:
        return None
    variable = data[pos + 1] & 0x01
    number = _utf8_number(data, pos + 4)
    if number is None:
        return None
    at = pos + 4 + number[1]
    size = _block_size(data[pos + 2] >> 4, data, at)
    if size is None or size[0] > max_block:
        return None
    at += size[1]
    rate_code = data[pos + 2] & 0x0F
    at += 1 if rate_code == 12 else 2 if rate_code in (13, 14) else 0
    if rate_code == 15 or at >= len(data) or _crc8(data[pos:at]) != data[at]:
        return None
    first = number[0] if variable else number[0] * max_block
    return first + size[0]


def total_candidates(data: bytes) -> Iterator[int]:
    """Totals (samples per channel) read off valid-looking frame headers, from the file's end backwards."""
    if data[:4] != b"fLaC" or len(data) < 42:
        return
    max_block = int.from_bytes(data[10:12], "big") or 65535
    start = max(42, len(data) - _SCAN_BYTES)
    pos = len(data)
    while (pos := data.rfind(b"\xff", start, pos)) >= 0:
        if pos + 1 < len(data) and data[pos + 1] in (0xF8, 0xF9):
            end = _frame_end(data, pos, max_block)
            if end is not None and 0 < end <= _TOTAL_MASK:
                yield end


def with_total(data: bytes, total: int) -> bytes:
    """A copy of the FLAC with STREAMINFO total_samples set to `total`."""
    word = (int.from_bytes(data[STREAMINFO], "big") & ~_TOTAL_MASK) | (total & _TOTAL_MASK)
    return data[: STREAMINFO.start] + word.to_bytes(8, "big") + data[STREAMINFO.stop :]
