"""Word-level tokenizer for scripts: turns -> tokens -> script text, and back.

Token stream of one turn::

    "george:"  "("  "on"  "a"  "phone"  ")"  "uh"  ","  "no"  "."  "\\n"
     speaker     stage direction             dialogue               end of turn

* the speaker tag of each turn is one token (``"soup nazi:"`` included);
* words keep contractions whole (``don't``, ``i'm``); punctuation is its own token;
* punctuation written between two letters without spaces (``no-mans-land``, ``9.15``,
  ``out...and``) becomes a glued token ``@-@`` (as WikiText does), so the text comes back
  with the spacing it had;
* ``"\\n"`` ends every turn, so turn boundaries are explicit.

``detokenize(tokenize(turns))`` gives back the script text in canonical form (see
``corpus.normalize``); for the Seinfeld corpus that is the original line for almost every
line (the tests measure how many).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .corpus import Turn, parse_line

EOT = "\n"
UNK = "<unk>"

# A word: letters/digits with inner apostrophes (don't, rock'n'roll); then runs of dots;
# then any other single non-space character.
_TOKEN = re.compile(r"'?[^\W_]+(?:'[^\W_]+)*'?|\.{2,}|-{2,}|[^\w\s]|_")
_GLUE = re.compile(r"(?<=[^\W_])(\.{2,}|-{2,}|[^\w\s'])(?=[^\W_])")

_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "--"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "#"}
_PAIRED = {'"', "*", "'"}  # the same mark opens and closes


def is_speaker_tag(token: str) -> bool:
    return len(token) > 1 and token.endswith(":")


def is_glued(token: str) -> bool:
    return len(token) > 2 and token.startswith("@") and token.endswith("@")


def tokenize_text(text: str) -> list[str]:
    """Tokens of a turn's text (no speaker tag, no end-of-turn)."""
    text = _GLUE.sub(r" @\1@ ", text)
    out: list[str] = []
    for piece in text.split(" "):
        if is_glued(piece):
            out.append(piece)
        elif piece:
            out.extend(_TOKEN.findall(piece))
    return out


def tokenize_turn(turn: Turn) -> list[str]:
    head = [f"{turn.speaker}:"] if turn.speaker else []
    return head + tokenize_text(turn.text) + [EOT]


def tokenize(turns: Iterable[Turn]) -> list[str]:
    return [token for turn in turns for token in tokenize_turn(turn)]


def tokenize_prime(text: str) -> list[str]:
    """Tokens of opening text: complete lines end with EOT, the last line stays open.

    A bare speaker name ("Jerry", "soup nazi") becomes that speaker's tag.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    tokens: list[str] = []
    for i, raw in enumerate(lines):
        turn = parse_line(raw)
        if turn is None:
            continue
        if i < len(lines) - 1:
            tokens.extend(tokenize_turn(turn))
        else:
            tokens.extend(tokenize_turn(turn)[:-1])
    return tokens


class Detokenizer:
    """Streams text pieces for tokens, one token at a time (for live output)."""

    def __init__(self) -> None:
        self.line_start = True
        self.glue_next = True
        self.open_marks: set[str] = set()  # quotes and *emphasis* open in this turn
        self.after_tag = False
        self.prev_last = ""  # two runs of dots or dashes must not merge into one

    def piece(self, token: str) -> str:
        if token == EOT:
            self.line_start, self.glue_next, self.open_marks, self.after_tag, self.prev_last = True, True, set(), False, ""
            return "\n"
        after_tag = self.after_tag
        self.after_tag = self.line_start and is_speaker_tag(token)
        self.line_start = False
        if is_glued(token):
            space, token, self.glue_next = "", token[1:-1], True
        elif token in _PAIRED:
            opening = token not in self.open_marks
            self.open_marks ^= {token}
            space = "" if (self.glue_next or not opening) else " "
            self.glue_next = opening
        else:
            space = "" if (self.glue_next or token in _NO_SPACE_BEFORE or token.startswith("..")) else " "
            self.glue_next = token in _NO_SPACE_AFTER
        if after_tag or (token[0] in ".-" and token[0] == self.prev_last):  # "jerry: ...", ". ...", "-- --"
            space = " "
        self.prev_last = token[-1]
        return space + token


def iter_detokenize(tokens: Iterable[str]) -> Iterator[str]:
    detok = Detokenizer()
    for token in tokens:
        yield detok.piece(token)


def detokenize(tokens: Iterable[str]) -> str:
    return "".join(iter_detokenize(tokens))
