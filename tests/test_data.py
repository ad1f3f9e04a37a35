"""data.py: split boundaries, shifted targets, TBPTT rows and windows."""

from __future__ import annotations

import pytest
import torch

from tvscript.corpus import Turn
from tvscript.data import IGNORE, batchify, encode, load_corpus, shard, split_turns, windows
from tvscript.tokenizer import EOT
from tvscript.vocab import Vocab


def test_split_is_contiguous_90_5_5():
    turns = [Turn("a", str(i), 3) for i in range(100)]
    splits = split_turns(turns)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [90, 5, 5]
    assert splits["train"] + splits["valid"] + splits["test"] == turns  # no shuffling across the boundary


def test_target_is_input_shifted_by_one():
    stream = torch.arange(26)
    x, y = batchify(stream, 4)  # (4, 6): 25 pairs, one dropped
    assert x.shape == (4, 6)
    assert torch.equal(y, x + 1)
    assert x[1, 0] == 6  # row 1 continues where row 0's block ends
    got = list(windows(x, y, seq_len=4))
    assert [w[1].shape[1] for w in got] == [4, 2]  # a short last window keeps every token
    assert torch.equal(torch.cat([w[1] for w in got], 1), x)


def test_padded_batchify_keeps_every_target_once():
    stream = torch.arange(11)
    x, y = batchify(stream, 3, pad=True)
    targets = y[y != IGNORE]
    assert sorted(targets.tolist()) == list(range(1, 11))


def test_shards_are_contiguous_and_equal():
    stream = torch.arange(101)
    a, b = shard(stream, 0, 2), shard(stream, 1, 2)
    assert len(a) == len(b) and a[-1] == b[0]  # overlap by one token: every target owned by one rank
    assert torch.equal(torch.cat([a[1:], b[1:]]), stream[1:])


def test_encode_counts_chars_and_starts_with_eot():
    turns = [Turn("jerry", "hi.", 11), Turn("george", "what?", 14)]
    vocab = Vocab.build(["jerry:", "hi", ".", EOT, "george:", "what", "?", EOT])
    s = encode(turns, vocab)
    assert s.chars == 25 and s.ids[0] == vocab.eot_id
    assert vocab.decode(s.ids.tolist()) == [EOT, "jerry:", "hi", ".", EOT, "george:", "what", "?", EOT]


@pytest.mark.slow
def test_real_corpus_splits(real_corpus):
    corpus = load_corpus(str(real_corpus), min_freq=1)
    lines = [line for line in real_corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    test = corpus.turns["test"]
    assert len(test) == 2731 and corpus.streams["test"].chars == 158435
    assert test[-1].line == " ".join(lines[-1].split())
    # the vocabulary comes from train only: a word that first appears in test is <unk>
    train_words = {w for t in corpus.turns["train"] for w in t.text.split()}
    assert all(tok in corpus.vocab.stoi for tok in ("jerry:", "george:", "elaine:", "kramer:"))
    assert len(corpus.vocab) > 15000 and train_words
