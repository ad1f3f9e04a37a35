"""adapt.py: dynamic evaluation scores before it learns, and the unknown-word cache."""

from __future__ import annotations

import math

import pytest
import torch

import tvscript
from tvscript.adapt import AdaptConfig, UnknownWordCache, adaptive_loss, adaptive_nll
from tvscript.data import Stream, load_corpus
from tvscript.errors import TvscriptError
from tvscript.evaluate import evaluate_loss, speller_for
from tvscript.model import LSTMLanguageModel, ModelConfig
from tvscript.spelling import SpellingModel


def small_model(seed: int = 0, **overrides) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(ModelConfig(vocab_size=12, embed_dim=8, hidden_dim=16, **overrides))


@pytest.mark.parametrize("adaptive_cutoffs", [(), (4, 8)])
def test_a_target_is_scored_before_any_update_has_seen_it(adaptive_cutoffs):
    model = small_model(adaptive_cutoffs=adaptive_cutoffs)
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 12, (40,), generator=gen)
    b = a.clone()
    b[11:] = torch.randint(0, 12, (29,), generator=gen)  # same first 11 tokens, then different text
    config = AdaptConfig(lr=1.0, window=4)
    nll_a, nll_b = adaptive_nll(model, a, config), adaptive_nll(model, b, config)
    # Targets 0..9 predict tokens 1..10, which the streams share: an update that had read
    # any later token (here, in the window 8..11) would change them.
    assert torch.equal(nll_a[:10], nll_b[:10])
    assert not torch.equal(nll_a[10:], nll_b[10:])


def test_without_steps_it_is_the_static_loss_and_the_model_is_untouched(tiny_run, tiny_corpus):
    model = tvscript.load(tiny_run)
    stream = load_corpus(str(tiny_corpus), vocab=model.vocab).streams["valid"]
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    static = evaluate_loss(model.model, stream, rows=1, seq_len=1000)
    frozen = adaptive_loss(model.model, stream, AdaptConfig(lr=0.0, window=5), unk_id=model.vocab.unk_id)
    assert frozen.tokens == static.tokens == stream.num_targets
    assert frozen.nll == pytest.approx(static.nll, rel=1e-5)
    adapted = adaptive_loss(model.model, stream, AdaptConfig(lr=0.5, window=8), unk_id=model.vocab.unk_id)
    assert adapted.nll != frozen.nll
    after = model.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # adaptation works on a copy


def test_adaptation_learns_text_that_repeats():
    model = small_model(seed=3, adaptive_cutoffs=(4, 8))
    ids = torch.tensor([1, 5, 9, 2, 7, 3] * 200)  # a cycle the untrained model has never seen
    static = adaptive_nll(model, ids, AdaptConfig(lr=0.0, window=6))
    adapted = adaptive_nll(model, ids, AdaptConfig(lr=2.0, window=6))
    assert static[-60:].mean() > 2.0 and adapted[-60:].mean() < 0.5  # about ln 6 = 1.8 without the order


def test_unknown_word_cache_prices_repeats_cheaply_and_stays_a_mixture():
    speller = SpellingModel(["jerry", "george", "elaine"], order=3)
    cache = UnknownWordCache(speller, weight=0.5, size=2)
    first = cache.cost_nats("kruger")
    assert first == pytest.approx(speller.cost_nats("kruger"))  # nothing seen yet: the full spelling
    cache.add("kruger")
    p_spell = math.exp(-speller.cost_nats("kruger"))
    assert cache.cost_nats("kruger") == pytest.approx(-math.log(0.5 + 0.5 * p_spell))
    assert cache.cost_nats("hoyt") == pytest.approx(-math.log(0.5) + speller.cost_nats("hoyt"))
    cache.add("hoyt")
    cache.add("hoyt")  # size 2: kruger drops out of the cache
    assert cache.cost_nats("kruger") == pytest.approx(-math.log(0.5 * p_spell))
    # the cached words' share plus the spelling's share of every string is one
    assert 0.5 * sum(cache.counts.values()) / len(cache.recent) + 0.5 == pytest.approx(1.0)


def test_adaptive_report_charges_unknown_words_through_the_cache(tiny_run):
    model = tvscript.load(tiny_run)
    v = model.vocab
    ids = torch.tensor([v.eot_id, v.stoi["jerry:"], 0, v.eot_id, v.stoi["jerry:"], 0, v.eot_id])
    stream = Stream(ids, chars=40, oov=("zorblax", "zorblax"))
    speller = speller_for(v)
    config = AdaptConfig(lr=0.1, window=3, unk_cache=0.5)
    report = adaptive_loss(model.model, stream, config, unk_id=v.unk_id, speller=speller)
    assert report.unk_targets == 2
    spelled = speller.cost_nats("zorblax")
    assert report.spelling_nll == pytest.approx(spelled - math.log(0.5 + 0.5 * math.exp(-spelled)))
    static = evaluate_loss(model.model, stream, speller=speller)
    assert report.spelling_nll < static.spelling_nll


@pytest.mark.parametrize("options, message", [
    (dict(lr=-1.0), "adapt lr"),
    (dict(lr=float("nan")), "adapt lr"),
    (dict(window=0), "adapt window"),
    (dict(unk_cache=1.0), "cache weight"),
    (dict(unk_cache_size=0), "cache size"),
])
def test_config_is_checked(options, message):
    with pytest.raises(TvscriptError, match=message):
        AdaptConfig(**options)


def test_works_when_called_under_inference_mode():
    model = small_model()
    with torch.inference_mode():
        ids = torch.randint(0, 12, (30,))
        nll = adaptive_nll(model, ids, AdaptConfig(lr=0.5, window=7))
    assert nll.shape == (29,) and torch.isfinite(nll).all()


def test_unknown_word_cache_prices_a_very_long_word():
    speller = SpellingModel(["ab"], order=2)
    cache = UnknownWordCache(speller, weight=0.5, size=10)
    cache.add("ab")
    word = "\u00e9" * 2000  # a spelling far past exp()'s range
    assert cache.cost_nats(word) == pytest.approx(speller.cost_nats(word) + math.log(2))
    assert math.isfinite(cache.cost_nats(word)) and cache.cost_nats(word) > 700
