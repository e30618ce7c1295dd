"""Which container an upload holds, read from its first bytes, never from its name, and what to say if refused.

The service decodes wav, flac, ogg and mp3 only, yet libsndfile reads a dozen more containers and
guesses raw formats from a file's extension. `sniff` reads the magic bytes: `RIFF....WAVE`, `fLaC`,
`OggS`, an MPEG audio frame header, or ID3v2 tags followed by an MPEG frame or `fLaC`; anything else
is named in the refusal ("an AIFF file", "text"). `unreadable` turns libsndfile's failure to open a
sniffed file into a client's sentence and code, reading the header itself (`header_fields`) where
libsndfile's message says nothing useful ("SF_INFO struct incomplete" for a sample rate of 0).
Refusals are (message, code) pairs; `ser.serving.uploads` raises them.

    with open(path, "rb") as f:
        found = sniff(f)  # Sniffed(container="WAV", offset=0, looks_like="a WAV file")
        message_code = refusal(found)  # None: decode it
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

import soundfile as sf

# The containers decoded, and the names libsndfile's `info.format` gives each (WAVEX: a WAV with an extensible fmt).
READS_AS = {"WAV": {"WAV", "WAVEX"}, "FLAC": {"FLAC"}, "OGG": {"OGG"}, "MP3": {"MP3"}}
ALLOWED = tuple(c for c in READS_AS if c != "MP3" or "MP3" in sf.available_formats())
FORMATS = ", ".join(c.lower() for c in ALLOWED)
MIN_RATE, MAX_RATE = 4000, 192000
MAX_CHANNELS = 8
MAX_TAGS = 1  # ID3v2 tags skipped at the start: libsndfile skips one (a second before FLAC fails to open)
MAX_CHUNKS = 1024  # RIFF chunks walked for `header_fields`
# Containers refused, by their magic at byte 0 (and, for IFF, the form type at byte 8): named in the refusal.
_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"RIFF", "a RIFF file that is not a WAVE"),
    (b"ID3", "another ID3 tag"),
    (b"RF64", "an RF64 file (64-bit WAV)"),
    (b"BW64", "an RF64 file (64-bit WAV)"),
    (b"riff\x2e\x91\xcf\x11", "a Sony Wave64 (W64) file"),
    (b"caff", "a CAF (Core Audio) file"),
    (b".snd", "an AU (Sun/NeXT) file"),
    (b"dns.", "an AU (Sun/NeXT) file"),
    (b"Creative Voice File", "a VOC file"),
    (b"NIST_1A", "a NIST SPHERE file"),
    (b"MATLAB 5.0", "a MATLAB 5 file"),
    (b" paf", "a PARIS (PAF) file"),
    (b"fap ", "a PARIS (PAF) file"),
    (b"Extended Instrument", "an XI instrument file"),
    (b"2BIT", "an AVR file"),
    (b"PVF1", "a PVF file"),
    (b"wvpk", "a WavPack file"),
    (b"MAC ", "a Monkey's Audio file"),
    (b"#!AMR", "an AMR file"),
    (b"MThd", "a MIDI file"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM file"),
    (b"0&\xb2u\x8ef\xcf\x11", "an ASF/WMA file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
)
_IFF = {
    b"AIFF": "an AIFF file",
    b"AIFC": "an AIFF-C file",
    b"8SVX": "an Amiga IFF/SVX file",
    b"16SV": "an Amiga IFF/SVX file",
}


@dataclass(frozen=True)
class Sniffed:
    """What the bytes hold: a decoded container (or None), where it starts (after ID3v2 tags), what it looks like."""

    container: str | None
    offset: int
    looks_like: str
    tag_only: bool = False  # ID3v2 tags and nothing after them: an MP3 without audio frames


def mpeg_frame(head: bytes) -> bool:
    """Whether `head` opens with a valid MPEG audio frame header (sync, version, layer, bitrate, rate)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    return version != 1 and layer != 0 and head[2] >> 4 != 15 and (head[2] >> 2) & 3 != 3


def _tags_end(f: BinaryIO) -> int:
    """The offset after the ID3v2 tags at the start of `f` (0 when there are none)."""
    offset = 0
    for _ in range(MAX_TAGS):
        f.seek(offset)
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4) or any(b & 0x80 for b in head[6:10]):
            break
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        offset += 10 + size + (10 if head[5] & 0x10 else 0)  # header, tag, footer
    return offset


def _looks_like(head: bytes) -> str:
    """A name for content that is none of the decoded containers."""
    if head[:4] == b"FORM":
        return _IFF.get(head[8:12], "an IFF file")
    for magic, name in _OTHERS:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    if head[:1] == b"\xff" and head[1:2] and head[1] & 0xF6 == 0xF0:
        return "an AAC (ADTS) stream"
    if len(head) >= 4 and (head[:2] == b"\x64\xa3" and head[3] == 0 or head[2:4] == b"\xa3\x64" and head[0] == 0):
        return "an IRCAM file"
    text = head.decode(errors="replace").rstrip("\ufffd")  # a character cut at the end is still text
    printable = text and "\ufffd" not in text and all(c.isprintable() or c.isspace() for c in text)
    return "text" if printable else "no known format"


def _container(head: bytes) -> tuple[str, str] | None:
    """(container, name) when `head` opens one of the decoded containers."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV", "a WAV file"
    if head[:4] == b"OggS":
        return "OGG", "an Ogg file"
    if head[:4] == b"fLaC":
        return "FLAC", "a FLAC stream"
    return ("MP3", "an MPEG audio stream") if mpeg_frame(head) else None


def sniff(f: BinaryIO) -> Sniffed:
    """The container of the open binary file `f`, from its magic bytes (after any ID3v2 tags)."""
    start = _tags_end(f)
    f.seek(start)
    head = f.read(64)
    found = _container(head)
    if not start:
        return Sniffed(found[0], 0, found[1]) if found else Sniffed(None, 0, _looks_like(head) if head else "nothing")
    if found and found[0] in ("FLAC", "MP3"):  # libsndfile skips ID3v2 tags before these two
        return Sniffed(found[0], start, f"an ID3 tag followed by {found[1]}")
    if not head or head[:3] == b"TAG" and len(head + f.read(65)) == 128:  # nothing, or an ID3v1 tag only
        return Sniffed(None, start, "an MP3 with an ID3 tag and no audio frames", tag_only=True)
    return Sniffed(None, start, f"an ID3 tag followed by {found[1] if found else _looks_like(head)}")


@dataclass(frozen=True)
class HeaderFields:
    """What a WAV's or FLAC's header states (None where it does not say)."""

    rate: int | None = None
    channels: int | None = None
    data_chunks: int = 0


def header_fields(f: BinaryIO, found: Sniffed) -> HeaderFields:
    """The sample rate and channels a WAV's fmt chunk or a FLAC's STREAMINFO states, and a WAV's data chunks."""
    if found.container == "FLAC":
        f.seek(found.offset)
        head = f.read(22)
        if len(head) < 22:
            return HeaderFields()
        return HeaderFields(int.from_bytes(head[18:21], "big") >> 4, ((head[20] >> 1) & 7) + 1)
    if found.container != "WAV":
        return HeaderFields()
    rate = channels = None
    data, pos = 0, 12
    for _ in range(MAX_CHUNKS):
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            break
        size = int.from_bytes(head[4:8], "little")
        if head[:4] == b"fmt " and len(head) >= 16:
            channels, rate = int.from_bytes(head[10:12], "little"), int.from_bytes(head[12:16], "little")
        data += head[:4] == b"data"
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return HeaderFields(rate, channels, data)


def rate_refusal(rate: int) -> tuple[str, str] | None:
    """The refusal of a sample rate outside the supported range (None: it is inside)."""
    if MIN_RATE <= rate <= MAX_RATE:
        return None
    return f"sample rate {rate} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz", "bad_sample_rate"


def channels_refusal(channels: int) -> tuple[str, str] | None:
    """The refusal of a channel count outside 1 to `MAX_CHANNELS` (None: it is inside)."""
    if 1 <= channels <= MAX_CHANNELS:
        return None
    return f"{channels} channels; expected 1 to {MAX_CHANNELS} (averaged to mono)", "bad_channels"


def refusal(found: Sniffed) -> tuple[str, str] | None:
    """The refusal of content that is none of the decoded containers (None: decode it)."""
    if found.container in ALLOWED:
        return None
    if found.tag_only:
        return f"{found.looks_like}: the audio holds no samples; expected at least one MPEG audio frame", "no_samples"
    names = [c.lower() for c in ALLOWED]
    return (
        f"not a readable audio file: its bytes look like {found.looks_like}, not like {', '.join(names[:-1])} or "
        f"{names[-1]} (the format is read from the content, whatever the file's name); expected {FORMATS}",
        "unsupported_format",
    )


def disagreement(found: Sniffed, read_as: str) -> tuple[str, str] | None:
    """The refusal of a file libsndfile reads as another container than its bytes start like (None: they agree)."""
    if read_as in READS_AS.get(found.container or "", ()):
        return None
    return (
        f"not a readable audio file: its bytes look like {found.looks_like} but it decodes as {read_as}; "
        f"expected {FORMATS}",
        "unsupported_format",
    )


def unreadable(err: Exception, found: Sniffed, f: BinaryIO) -> tuple[str, str]:
    """The refusal of a sniffed file libsndfile cannot open, in words a client can act on (no server paths)."""
    reason = err.error_string if isinstance(err, sf.LibsndfileError) else str(err)
    reason = re.sub(r"^Error opening .*?: ", "", reason).strip().rstrip(".")
    if "SF_INFO struct incomplete" in reason or "Channel count is zero" in reason:
        fields = header_fields(f, found)
        if fields.rate is not None and (bad := rate_refusal(fields.rate)):
            return bad
        if fields.channels is not None and (bad := channels_refusal(fields.channels)):
            return bad
        if fields.data_chunks > 1:
            return (
                f"a WAV with {fields.data_chunks} data chunks; expected exactly one (a plain WAV file)",
                "unsupported_format",
            )
        reason = "its header is incomplete"
    if "possibly a pipe" in reason:  # libsndfile's words when mpg123 finds no frame it can decode
        reason = "no MPEG audio frame decodes" if found.container == "MP3" else "it cannot be opened"
    return f"not a readable audio file: {found.looks_like} that cannot be read ({reason}); expected {FORMATS}", (
        "unsupported_format"
    )
