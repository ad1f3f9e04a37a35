"""Export generated scenes as plain text, Markdown, JSON (a list of turns) or Fountain."""

from __future__ import annotations

import json

from .corpus import parse_line


def turns_of(text: str) -> list[dict[str, str | None]]:
    return [{"speaker": t.speaker, "text": t.text} for t in map(parse_line, text.splitlines()) if t is not None]


def to_markdown(text: str) -> str:
    lines = []
    for turn in turns_of(text):
        lines.append(f"**{turn['speaker'].upper()}:** {turn['text']}" if turn["speaker"] else f"*{turn['text']}*")
    return "\n\n".join(lines) + "\n"


def to_fountain(text: str) -> str:
    """Fountain: a character cue in capitals, parentheticals on their own line, then dialogue."""
    blocks = []
    for turn in turns_of(text):
        if not turn["speaker"]:
            action = turn["text"].strip("[]() ").capitalize()
            if action:  # "[]" would leave an empty block
                blocks.append(action)
            continue
        cue = turn["speaker"].upper()
        if not cue.isupper():  # no cased letter ("23", a CJK name): Fountain needs the forced cue
            cue = "@" + cue
        said = turn["text"]
        parenthetical = ""
        if said.startswith("(") and ")" in said:
            parenthetical, said = said[: said.index(")") + 1], said[said.index(")") + 1 :].strip()
        blocks.append("\n".join(x for x in (cue, parenthetical, said or "...") if x))
    return "\n\n".join(blocks) + "\n"


def render(texts: list[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"turns": turns_of(t), "text": t} for t in texts], indent=2) + "\n"
    convert = {"text": lambda t: t, "markdown": to_markdown, "fountain": to_fountain}[fmt]
    return "\n---\n\n".join(convert(t) for t in texts)
