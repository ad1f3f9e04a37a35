"""Script-quality metrics on hand-made scripts, and the script form of generated scenes."""

from __future__ import annotations

import json
import math

import pytest

from tvscript import script_metrics as sm
from tvscript.corpus import parse_line

SPEAKERS = frozenset({"jerry", "george", "elaine", "kramer", "soup nazi"})


def scene(text: str):
    return sm.parse_scene(text)


# -- words --------------------------------------------------------------------------------

def test_words_skip_punctuation_and_keep_unk():
    assert sm.words_of("(sitting down) i don't know, jerry!") == ["sitting", "down", "i", "don't", "know", "jerry"]
    assert sm.words_of("no-mans-land...") == ["no", "mans", "land"]
    assert sm.words_of("hello <unk> there <unk>") == ["hello", "<unk>", "there", "<unk>"]
    assert sm.words_of("???") == []


# -- structure ----------------------------------------------------------------------------

def test_one_malformed_turn_gives_two_thirds():
    turns = scene("jerry: hello there.\ngeorge:\nelaine: hi.")
    assert [t.speaker for t in turns] == ["jerry", "george", "elaine"]
    assert sm.well_formed_rate(turns, SPEAKERS) == pytest.approx(2 / 3)


def test_well_formed_needs_known_speaker_and_words():
    assert sm.is_well_formed(parse_line("soup nazi: no soup for you!"), SPEAKERS)
    assert sm.is_well_formed(parse_line("george (whistles): hey."), SPEAKERS)
    assert not sm.is_well_formed(parse_line("newman: hello, jerry."), SPEAKERS)  # not a training speaker
    assert not sm.is_well_formed(parse_line("[the coffee shop.]"), SPEAKERS)  # narration
    assert sm.is_well_formed(parse_line("kramer: ???"), SPEAKERS)  # the corpus has such turns
    assert sm.is_well_formed(parse_line("kramer: (shrugs)"), SPEAKERS)
    assert not sm.is_well_formed(parse_line("kramer: ()"), SPEAKERS)  # nothing said
    assert sm.well_formed_rate([], SPEAKERS) == 0.0


def test_inline_tag():
    assert sm.has_inline_tag("hey. george: what?", SPEAKERS)
    assert sm.has_inline_tag("yes. soup nazi: no soup", SPEAKERS)
    assert not sm.has_inline_tag("it's at 9:15, okay: fine", SPEAKERS)
    turns = scene("jerry: hi. elaine: hey.\ngeorge: fine.")
    assert sm.inline_tag_rate(turns, SPEAKERS) == 0.5


def test_unk_rate_counts_unk_and_out_of_vocabulary_words():
    vocab = {"hello", "world", "jerry:"}
    turns = scene("jerry: hello <unk> world.\njerry: hello, stranger!")
    # words: hello <unk> world | hello stranger -> 2 of 5 unknown
    assert sm.unk_rate(turns, vocab) == pytest.approx(2 / 5)
    assert sm.unk_rate(scene("jerry: hello world"), vocab) == 0.0


@pytest.mark.parametrize("text, ok", [
    ("(sitting) hi [there]", True), ("[a (b) c]", True), ("no brackets", True),
    ("(open", False), ("close)", False), ("( ]", False), ("([)]", False), (")(", False),
])
def test_is_balanced(text, ok):
    assert sm.is_balanced(text) is ok


def test_balanced_rate():
    turns = scene("jerry: (laughs) hi.\ngeorge: (no.\nelaine: [yes] ok.\nkramer: what]")
    assert sm.balanced_rate(turns) == 0.5


def test_tv_distance():
    assert sm.tv_distance({"jerry": 3, "george": 1}, {"jerry": 6, "george": 2}) == 0.0
    assert sm.tv_distance({"jerry": 3}, {"george": 5, "elaine": 1}) == 1.0
    assert sm.tv_distance({"jerry": 1, "george": 1}, {"jerry": 1}) == pytest.approx(0.5)
    assert sm.tv_distance({}, {}) == 0.0 and sm.tv_distance({"a": 1}, {}) == 1.0


def test_recurring_speakers_and_pooling():
    counts = {"jerry": 60, "george": 30, "hoyt": 9, "kruger": 1}
    assert sm.recurring_speakers(counts, share=0.05) == {"jerry", "george", "hoyt"}
    assert sm.recurring_speakers({}) == frozenset()
    pooled = sm.pool_speakers(counts, {"jerry", "george"})
    assert pooled == {"jerry": 60, "george": 30, sm.OTHER_SPEAKERS: 10}
    # guests who differ by name but hold the same share are the same cast once pooled
    a, b = {"jerry": 3, "hoyt": 1}, {"jerry": 3, "lisi": 1}
    assert sm.tv_distance(a, b) == pytest.approx(0.25)
    assert sm.tv_distance(sm.pool_speakers(a, {"jerry"}), sm.pool_speakers(b, {"jerry"})) == 0.0


def test_speaker_counts_skip_first():
    scenes = [scene("jerry: a\ngeorge: b\n[narration]\njerry: c"), scene("jerry: d\nelaine: e")]
    assert sm.speaker_counts(scenes) == {"jerry": 3, "george": 1, "elaine": 1}
    assert sm.speaker_counts(scenes, skip_first=True) == {"jerry": 1, "george": 1, "elaine": 1}


def test_self_reply_rate():
    # pairs: (jerry, jerry) same, (jerry, george) different; narration breaks adjacency
    s = scene("jerry: a\njerry: b\ngeorge: c\n[the door opens]\ngeorge: d")
    assert sm.self_reply_rate([s]) == 0.5
    # pairs never cross scenes
    assert sm.self_reply_rate([scene("jerry: a"), scene("jerry: b")]) == 0.0


# -- length and diversity -----------------------------------------------------------------

def test_words_per_turn_mean_and_std():
    turns = scene("jerry: one two.\ngeorge: one two three four!\n[narration is not counted here]")
    assert sm.words_per_turn(turns) == (3.0, 1.0)
    assert sm.words_per_turn([]) == (0.0, 0.0)


def test_distinct_n():
    s = [scene("jerry: a b a b")]
    assert sm.distinct_n(s, 1) == 0.5  # a b a b: 2 unique of 4
    assert sm.distinct_n(s, 2) == pytest.approx(2 / 3)  # ab ba ab
    assert sm.distinct_n(s, 3) == 1.0  # aba bab
    # n-grams do not cross turns, and are pooled over all scenes
    s2 = [scene("jerry: a b\ngeorge: c d"), scene("jerry: a b")]
    assert sm.distinct_n(s2, 2) == pytest.approx(2 / 3)  # ab cd ab
    assert sm.distinct_n([scene("jerry: a")], 2) == 0.0


def test_repeated_trigram_rate():
    # abc bca cab abc -> the last one loops
    assert sm.repeated_ngram_rate([scene("jerry: a b c a b c")], 3) == 0.25
    # earlier turns of the scene count; other scenes do not
    assert sm.repeated_ngram_rate([scene("jerry: a b c\ngeorge: a b c")], 3) == 0.5
    assert sm.repeated_ngram_rate([scene("jerry: a b c"), scene("george: a b c")], 3) == 0.0


# -- copying ------------------------------------------------------------------------------

TRAIN = scene("""\
jerry: i don't know what you're talking about, george.
george: well, the thing is, i was never in the army.
elaine: get out! you went to the movies without me?
""")


@pytest.fixture(scope="module")
def index():
    return sm.TrainingIndex(TRAIN)


def test_verbatim_copy_is_detected(index):
    copied = parse_line("kramer: i don't know what you're talking about!")  # 7 words inside a training turn
    whole = parse_line("jerry: i don't know what you're talking about, george.")
    novel = parse_line("kramer: i don't know what he is talking about, jerry.")
    assert index.occurs(sm.words_of(copied.text)) and index.occurs(sm.words_of(whole.text))
    assert not index.occurs(sm.words_of(novel.text))
    assert index.copy_rate([copied, novel]) == (0.5, 2)


def test_copy_across_two_training_turns_is_not_a_copy(index):
    # the sequence spans the end of one turn and the start of the next
    line = parse_line("jerry: you're talking about, george. well, the thing is")
    assert not index.occurs(sm.words_of(line.text))
    # every 6-gram of "a b c d e f g h" is in training, but not all in one turn
    pieces = sm.TrainingIndex(scene("jerry: a b c d e f g\ngeorge: b c d e f g h"))
    assert pieces.occurs(list("abcdefg")) and pieces.occurs(list("bcdefgh"))
    assert not pieces.occurs(list("abcdefgh"))
    assert pieces.longest_shared_ngram(scene("kramer: a b c d e f g h")) == 7


def test_short_lines_do_not_count(index):
    short = parse_line("jerry: get out! you went")  # 4 words
    assert index.copy_rate([short]) == (0.0, 0)


def test_unknown_words_never_match(index):
    assert not index.occurs(["i", "don't", "know", "what", "you're", "<unk>"])


def test_longest_shared_ngram(index):
    turns = scene("jerry: so the thing is, i was never in the mood.\nkramer: banana banana")
    # "the thing is i was never in the" = 8 words shared with george's training line
    assert index.longest_shared_ngram(turns) == 8
    assert index.longest_shared_ngram(scene("kramer: banana banana")) == 0
    assert index.longest_shared_ngram(scene("kramer: the banana")) == 1
    assert index.longest_shared_ngram(TRAIN) == 10  # george's whole line


def test_script_metrics_all_keys(index):
    samples = ["jerry: hi there.\ngeorge: (sighs) hi.\n", "elaine: get out! you went to the movies without me?\n"]
    m = sm.script_metrics(samples, speakers=SPEAKERS, vocabulary={"hi", "there"}, index=index)
    assert m["scenes"] == 2 and m["turns"] == 3 and m["words"] == 4 + 9
    assert m["well_formed_rate"] == 1.0 and m["balanced_rate"] == 1.0 and m["self_reply_rate"] == 0.0
    assert m["copy_rate"] == 1.0 and m["copy_lines"] == 1 and m["longest_shared_ngram"] == 9
    assert m["unk_rate"] == pytest.approx(10 / 13)  # only hi/there are in that vocabulary


def test_pseudo_scenes():
    turns = scene("jerry: a b\ngeorge: c d\njerry: e f\ngeorge: g h\njerry: i")
    chunks = sm.pseudo_scenes(turns, 4)
    assert [[t.text for t in c] for c in chunks] == [["a b", "c d"], ["e f", "g h"]]  # the 1-word tail is dropped
    assert len(sm.pseudo_scenes(turns, 2, count=2)) == 2
    assert sm.pseudo_scenes(turns, 2)[-1][-1].text == "i"  # a tail of half a scene or more is kept


# -- generated scenes ---------------------------------------------------------------------

def _train_speakers(tiny_corpus):
    from tvscript.data import load_corpus

    return frozenset(t.speaker for t in load_corpus(str(tiny_corpus)).turns["train"] if t.speaker)


def test_structured_generation_is_well_formed(tiny_run, tiny_corpus):
    import tvscript

    model = tvscript.load(tiny_run)
    speakers = _train_speakers(tiny_corpus)
    vocab = model.vocab.stoi
    # Scenes end by max_lines here (the tiny model's turns can run long: a big budget);
    # the budget's forced end has its own test below.
    form = dict(max_new_tokens=5000, max_lines=10)
    for seed in range(4):
        turns = sm.parse_scene(model.generate("jerry:", seed=seed, **form))
        assert len(turns) == 10
        for turn in turns:
            assert sm.is_well_formed(turn, speakers), turn
            assert sm.is_balanced(turn.text), turn
            assert not sm.has_inline_tag(turn.text, speakers), turn
        assert sm.unk_rate(turns, vocab) == 0.0

        cast = ("jerry", "george", "elaine")
        turns = sm.parse_scene(model.generate("george:", seed=seed, cast=cast, no_self_reply=True, **form))
        assert all(sm.is_well_formed(t, speakers) and sm.is_balanced(t.text) for t in turns)
        assert {t.speaker for t in turns} <= set(cast)
        assert all(a.speaker != b.speaker for a, b in zip(turns, turns[1:])), [t.speaker for t in turns]


def test_budget_end_leaves_no_empty_turn(tiny_run, tiny_corpus):
    import tvscript

    model = tvscript.load(tiny_run)
    speakers = _train_speakers(tiny_corpus)
    for seed in range(150):
        turns = sm.parse_scene(model.generate("jerry:", seed=seed, max_new_tokens=10))
        assert all(sm.is_well_formed(t, speakers) for t in turns), (seed, [t.line for t in turns])


def test_compare_samples_on_tiny_run(tiny_run, tiny_corpus):
    import tvscript
    from tvscript.data import load_corpus

    model = tvscript.load(tiny_run)
    corpus = load_corpus(str(tiny_corpus), vocab=model.vocab)
    result = sm.compare_samples(model, corpus, "test", 3, seed=5, max_new_tokens=60)
    again = sm.compare_samples(model, corpus, "test", 3, seed=5, max_new_tokens=60)
    result.pop("sample_seconds"), again.pop("sample_seconds")
    assert result == again  # fixed seeds: the same scenes
    assert result["samples"] == 3 and result["sample_seed"] == 5
    for name in ("well_formed_rate", "unk_rate", "balanced_rate", "self_reply_rate", "words_per_turn_mean",
                 "words_per_turn_std", "distinct_1", "distinct_2", "distinct_3", "repeated_trigram_rate",
                 "copy_rate", "longest_shared_ngram", "inline_tag_rate"):
        assert f"sample_{name}" in result and f"heldout_{name}" in result, name
    # (well-formedness itself is tested above; the budget's forced end can cost a turn)
    assert result["sample_well_formed_rate"] > 0.8 and result["sample_unk_rate"] == 0.0
    assert result["sample_balanced_rate"] == 1.0 and result["sample_inline_tag_rate"] == 0.0
    assert 1 <= result["heldout_scenes"] <= 3  # the tiny test split has room for fewer
    for prefix in ("", "heldout_", "train_"):
        assert 0.0 <= result[f"{prefix}speaker_tv_distance"] <= 1.0
        # pooling merges classes, which can only bring two distributions closer
        assert result[f"{prefix}cast_tv_distance"] <= result[f"{prefix}speaker_tv_distance"] + 1e-12
    assert result["recurring_speakers"] and set(result["recurring_speakers"]) <= set(model.speakers())
    assert result["heldout_copy_rate"] == 1.0  # the tiny corpus repeats one scene 20 times
    assert all(not isinstance(v, float) or math.isfinite(v) for v in result.values())
    json.dumps(result)


def test_cli_evaluate_with_samples(tiny_run, tiny_corpus, capsys):
    from tvscript.cli import main

    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_corpus), "--samples", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "test" and out["samples"] == 2
    assert "perplexity" in out and "sample_distinct_2" in out and "heldout_distinct_2" in out
    assert out["sample_unk_rate"] == 0.0 and out["heldout_well_formed_rate"] < 1.0  # narration in the split
