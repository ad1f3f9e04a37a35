"""corpus.py: the three layouts, normalisation, and one-line errors for bad files."""

from __future__ import annotations

import pytest

from tvscript.corpus import CorpusError, Turn, normalize, parse_line, read_turns


def test_parse_line_speaker_direction_and_narration():
    assert parse_line("jerry: hello there.") == Turn("jerry", "hello there.", 20)
    t = parse_line("George (whistles to guy on phone): Hey!")
    assert (t.speaker, t.text) == ("george", "(whistles to guy on phone) hey!")
    assert parse_line("SOUP NAZI: No soup for you!").speaker == "soup nazi"
    narration = parse_line("[setting: monk's coffee shop]")
    assert narration.speaker is None and narration.text == "[setting: monk's coffee shop]"
    assert parse_line("(elaine awakes at 9:15 - late)").speaker is None
    assert parse_line("   ") is None


def test_normalize_unicode_punctuation():
    assert normalize("  Jerry\u2019s \u201cbig\u201d day\u2026  \u2014 ok ") == "jerry's \"big\" day... - ok"


def test_read_text_crlf_and_curly_quotes(tmp_path):
    path = tmp_path / "show.txt"
    path.write_bytes("MONICA: I\u2019m here.\r\n\r\nRoss (sadly): We were on a break!\r\n".encode())
    turns = read_turns(path)
    assert [(t.speaker, t.text) for t in turns] == [("monica", "i'm here."), ("ross", "(sadly) we were on a break!")]


def test_read_csv_default_and_custom_columns(tmp_path):
    path = tmp_path / "scripts.csv"
    path.write_text('Character,Dialogue,EpisodeNo,SEID,Season\nJERRY,"Hello, Newman.",1,S01E01,1\nNEWMAN,Hello Jerry.,1,S01E01,1\n,,1,S01E01,1\n')
    assert [(t.speaker, t.text) for t in read_turns(path)] == [("jerry", "hello, newman."), ("newman", "hello jerry.")]
    other = tmp_path / "other.csv"
    other.write_text("who,line\nkramer,giddyup\n")
    assert read_turns(other, speaker_column="who", text_column="line")[0] == Turn("kramer", "giddyup", 16)
    with pytest.raises(CorpusError, match="no column 'character'.*--speaker-column"):
        read_turns(other)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary\x00", "binary"),
        (b"jerry: caf\xe9 \xff\xfe", "cannot be decoded"),
        (b"just some prose without any speakers at all.\nmore prose.\n", "no dialogue turns"),
    ],
)
def test_bad_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as err:
        read_turns(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_turns(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="directory"):
        read_turns(tmp_path)


@pytest.mark.slow
def test_real_corpus_keeps_every_line(real_corpus):
    turns = read_turns(real_corpus)
    raw_lines = [line for line in real_corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(turns) == len(raw_lines) == 54616
    # nothing is cut from the start (the reference helper dropped the first 81 characters)
    assert turns[0].speaker == "jerry" and turns[0].text.startswith("do you know what this is all about?")
    assert sum(t.chars for t in turns) == sum(len(line.strip()) + 1 for line in raw_lines)
