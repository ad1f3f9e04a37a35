"""Read TV transcripts into a list of turns.

Three layouts are understood:

* the Seinfeld corpus as shipped: lowercased ``name: line`` turns separated by blank lines;
* any plain-text transcript with ``NAME: line`` turns (any case, CRLF, curly quotes,
  multi-word names such as ``soup nazi:``, stage directions in parentheses);
* CSV transcripts with one spoken line per row (Kaggle's "Seinfeld Chronicles"
  ``scripts.csv`` layout works without flags).

Every non-empty line of a text file is one turn; a line without a speaker tag is a
narration turn (``speaker is None``), so nothing in the file is dropped.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .errors import TvscriptError


class CorpusError(TvscriptError):
    """A corpus file that cannot be read as a transcript."""


@dataclass(frozen=True)
class Turn:
    """One line of a script: who speaks (None for narration) and what is said."""

    speaker: str | None
    text: str
    chars: int  # characters of the source line plus one newline; the bits/char denominator

    @property
    def line(self) -> str:
        return f"{self.speaker}: {self.text}".rstrip() if self.speaker else self.text


# Unicode punctuation that transcripts use where the corpus uses ASCII. The C1 code
# points are cp1252 smart quotes that were decoded as latin-1 somewhere upstream.
_TRANSLATE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u0091": "'", "\u0092": "'", "`": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u0093": '"', "\u0094": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
        "\u2026": "...", "\u00a0": " ",
    }
)
_SPACES = re.compile(r"\s+")
# A speaker tag: up to 40 characters of name (no brackets or colon), an optional
# parenthetical direction, then a colon followed by a space or the end of the line
# (so "9:15" inside a stage direction is not a tag).
_SPEAKER = re.compile(r"^([^\W_][^:()\[\]\"]{0,39}?)\s*(\([^()]*\))?\s*:(?=\s|$)\s*")

CSV_DEFAULT_COLUMNS = ("character", "dialogue")


def normalize(text: str) -> str:
    """Canonical form of one line: NFKC, ASCII punctuation, lowercase, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    return _SPACES.sub(" ", text).strip().lower()


def normalize_speaker(name: str) -> str:
    return normalize(name).rstrip(":").strip()


def parse_line(raw: str) -> Turn | None:
    """Parse one transcript line; None for a blank line."""
    line = normalize(raw)
    if not line:
        return None
    chars = len(raw.strip()) + 1
    match = _SPEAKER.match(line)
    if not match:
        return Turn(None, line, chars)
    speaker = match.group(1).strip()
    direction = match.group(2)
    text = line[match.end():]
    if direction:  # "george (whistles): hey" keeps the direction as the start of the line
        text = f"{direction} {text}".strip()
    return Turn(speaker, text, chars)


def _decode(path: Path, data: bytes, encoding: str) -> str:
    if not data.strip():
        raise CorpusError(f"{path}: the file is empty; expected a transcript with 'NAME: line' turns")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        if b"\x00" in data[:8192]:
            raise CorpusError(f"{path}: looks like a binary file, not a text transcript "
                              "(if it is UTF-16 text, pass --encoding utf-16)") from None
        line = data.count(b"\n", 0, err.start) + 1
        raise CorpusError(
            f"{path}: cannot be decoded as {encoding} (bad byte 0x{data[err.start]:02x} on line {line}, "
            f"offset {err.start}); re-save it as UTF-8 or pass --encoding"
        ) from None
    except LookupError:
        raise CorpusError(f"unknown text encoding {encoding!r}; use a name such as utf-8, cp1252 or latin-1") from None
    if "\x00" in text[:8192]:  # NULs after decoding: not text (checked after, so --encoding utf-16 works)
        raise CorpusError(f"{path}: looks like a binary file, not a text transcript")
    return text


def _find_column(fields: list[str], wanted: str, path: Path, flag: str) -> str:
    for name in fields:
        if name.strip().lower() == wanted.strip().lower():
            return name
    raise CorpusError(
        f"{path}: no column {wanted!r} (columns: {', '.join(fields) or 'none'}); choose one with {flag}"
    )


def parse_csv(text: str, path: Path, speaker_column: str | None, text_column: str | None) -> list[Turn]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        fields = reader.fieldnames or []  # reads the header row: it can be malformed too
    except csv.Error as err:
        raise CorpusError(f"{path}: malformed CSV header ({err}); check for an unclosed quote") from None
    speaker_key = _find_column(fields, speaker_column or CSV_DEFAULT_COLUMNS[0], path, "--speaker-column")
    text_key = _find_column(fields, text_column or CSV_DEFAULT_COLUMNS[1], path, "--text-column")
    turns = []
    try:
        for row in reader:
            said = normalize(row.get(text_key) or "")
            if not said:
                continue
            speaker = normalize_speaker(row.get(speaker_key) or "") or None
            raw = f"{row.get(speaker_key) or ''}: {row.get(text_key) or ''}"
            turns.append(Turn(speaker, said, len(_SPACES.sub(" ", raw).strip()) + 1))
    except csv.Error as err:
        raise CorpusError(f"{path}: malformed CSV at line {reader.line_num} ({err}); check for an unclosed quote") from None
    return turns


def parse_text(text: str) -> list[Turn]:
    return [turn for turn in map(parse_line, text.splitlines()) if turn is not None]


def read_turns(
    path: str | Path,
    *,
    speaker_column: str | None = None,
    text_column: str | None = None,
    encoding: str = "utf-8-sig",
) -> list[Turn]:
    """Read a transcript file (text or CSV) into turns, or raise CorpusError."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file; get the Seinfeld corpus with 'tvscript download'")
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a transcript file")
    text = _decode(path, path.read_bytes(), encoding)
    is_csv = path.suffix.lower() == ".csv" or speaker_column is not None or text_column is not None
    turns = parse_csv(text, path, speaker_column, text_column) if is_csv else parse_text(text)
    if not any(turn.speaker for turn in turns):
        raise CorpusError(f"{path}: no dialogue turns found; expected lines like 'NAME: what they say'")
    return turns
