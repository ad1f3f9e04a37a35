"""Export of generated scenes: text, Markdown, JSON and Fountain."""

from __future__ import annotations

import json

import pytest

from tvscript.formats import render, to_fountain, to_markdown, turns_of

SCRIPT = """\
jerry: (pointing) see, that button is in the worst spot.
[the coffee shop.]
george: are you through?
soup nazi: no soup for you!
kramer: (bursting in)
"""

TURNS = [
    {"speaker": "jerry", "text": "(pointing) see, that button is in the worst spot."},
    {"speaker": None, "text": "[the coffee shop.]"},
    {"speaker": "george", "text": "are you through?"},
    {"speaker": "soup nazi", "text": "no soup for you!"},
    {"speaker": "kramer", "text": "(bursting in)"},
]


def test_turns_of():
    assert turns_of(SCRIPT) == TURNS
    assert turns_of("\n\nJERRY:  Hello   there.\r\n\n") == [{"speaker": "jerry", "text": "hello there."}]


def test_text_is_the_script_itself():
    assert render([SCRIPT], "text") == SCRIPT
    two = render([SCRIPT, "jerry: hi.\n"], "text")
    assert two == SCRIPT + "\n---\n\njerry: hi.\n"


def test_json_lists_turns_with_speaker_and_text():
    data = json.loads(render([SCRIPT, "jerry: hi.\n"], "json"))
    assert isinstance(data, list) and len(data) == 2  # one object per scene
    assert data[0]["turns"] == TURNS
    assert data[0]["text"] == SCRIPT
    assert data[1]["turns"] == [{"speaker": "jerry", "text": "hi."}]
    assert all(set(turn) == {"speaker", "text"} for scene in data for turn in scene["turns"])


def test_markdown():
    out = to_markdown(SCRIPT)
    assert out == (
        "**JERRY:** (pointing) see, that button is in the worst spot.\n\n"
        "*[the coffee shop.]*\n\n"
        "**GEORGE:** are you through?\n\n"
        "**SOUP NAZI:** no soup for you!\n\n"
        "**KRAMER:** (bursting in)\n"
    )
    assert render([SCRIPT, SCRIPT], "markdown") == out + "\n---\n\n" + out


def test_fountain():
    out = to_fountain(SCRIPT)
    assert out == (
        "JERRY\n(pointing)\nsee, that button is in the worst spot.\n\n"
        "The coffee shop.\n\n"
        "GEORGE\nare you through?\n\n"
        "SOUP NAZI\nno soup for you!\n\n"
        "KRAMER\n(bursting in)\n...\n"
    )
    blocks = out.rstrip("\n").split("\n\n")
    for block in blocks:
        lines = block.split("\n")
        if len(lines) > 1:  # a dialogue block: capitalised cue, then parenthetical/dialogue lines
            assert lines[0] == lines[0].upper() and lines[0].isupper()
            assert all(line for line in lines[1:])
            paren = [line for line in lines[1:] if line.startswith("(")]
            assert all(line.endswith(")") for line in paren)  # parentheticals stand alone


def test_fountain_direction_in_the_speaker_tag_becomes_a_parenthetical():
    assert to_fountain("george (whistles): hey, jerry.\n") == "GEORGE\n(whistles)\nhey, jerry.\n"


@pytest.mark.parametrize("speaker, cue", [("man #2", "MAN #2"), ("r2d2", "R2D2"), ("23", "@23"), ("李", "@李")])
def test_fountain_cue_is_forced_when_it_cannot_be_all_capitals(speaker, cue):
    assert to_fountain(f"{speaker}: hello.\n").split("\n")[0] == cue


def test_fountain_skips_empty_narration():
    assert to_fountain("jerry: hi.\n[]\ngeorge: hey.\n") == "JERRY\nhi.\n\nGEORGE\nhey.\n"


def test_render_rejects_unknown_format():
    with pytest.raises(KeyError):
        render([SCRIPT], "html")
