"""evaluate.py and spelling.py: every target counted once, bits/char, the <unk> charge."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import tvscript
from tvscript.data import Stream, load_corpus
from tvscript.evaluate import evaluate_loss, speller_for
from tvscript.spelling import SpellingModel


def test_spelling_model_is_a_distribution():
    model = SpellingModel(["ab", "a", "ba", "bab"], order=3)
    mass = sum(math.exp(-model.cost_nats("".join(w))) for n in range(8) for w in itertools.product("ab\x04", repeat=n))
    assert 0.99 < mass <= 1.0 + 1e-9
    assert model.cost_nats("ab") < model.cost_nats("bbbbbb")
    assert math.isfinite(model.cost_nats("zebra\u00e9"))  # unseen characters still get a price


@pytest.mark.parametrize("rows, seq_len", [(1, 7), (3, 4), (16, 256)])
def test_every_target_counted_once_whatever_the_batching(tiny_run, tiny_corpus, rows, seq_len):
    model = tvscript.load(tiny_run)
    stream = load_corpus(str(tiny_corpus), vocab=model.vocab).streams["valid"]
    report = evaluate_loss(model.model, stream, rows=rows, seq_len=seq_len)
    assert report.tokens == stream.num_targets
    # one pass over the whole stream from a zero state gives the same total when rows == 1
    x, y = stream.ids[None, :-1], stream.ids[None, 1:]
    _, loss, _ = model.model(x, None, y)
    if rows == 1:
        assert report.nll == pytest.approx(loss.item() * stream.num_targets, rel=1e-5)
    assert report.bits_per_char == pytest.approx(report.nll / math.log(2) / stream.chars)


def test_unk_targets_are_charged_their_spelling(tiny_run):
    model = tvscript.load(tiny_run)
    ids = torch.tensor([model.vocab.eot_id, model.vocab.stoi["jerry:"], 0, 0, model.vocab.eot_id])
    stream = Stream(ids, chars=30, oov=("zorblax", "quux"))
    speller = speller_for(model.vocab)
    report = evaluate_loss(model.model, stream, speller=speller)
    assert report.unk_targets == 2 and report.oov_rate == 0.5
    extra = speller.cost_nats("zorblax") + speller.cost_nats("quux")
    assert report.spelling_nll == pytest.approx(extra)
    assert report.bits_per_char == pytest.approx(report.bits_per_char_closed + extra / math.log(2) / 30)
