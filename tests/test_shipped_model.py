"""The shipped Seinfeld model: it loads, fits the size budget, and matches its model card."""

from __future__ import annotations

import json
import re

import pytest

import tvscript
from tvscript.adapt import AdaptConfig, adaptive_loss
from tvscript.api import SHIPPED_MODEL
from tvscript.data import load_corpus
from tvscript.evaluate import evaluate_loss, speller_for


def card_blocks() -> list[dict]:
    """The ```json blocks of MODEL_CARD.md (what `tvscript evaluate --json` printed)."""
    card = (SHIPPED_MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(\{.*?\})\n```", card, re.S)]


def card_figures() -> dict:
    """The first block: the static test-split figures."""
    blocks = card_blocks()
    assert blocks, "MODEL_CARD.md has no ```json block with the test-split figures"
    return blocks[0]


def test_shipped_model_loads_and_is_small():
    files = {p.name: p.stat().st_size for p in SHIPPED_MODEL.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.json", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) <= 20 * 1024 * 1024
    model = tvscript.load()  # no path: the shipped model
    assert model.path.resolve() == SHIPPED_MODEL.resolve()
    text = model.generate("jerry", max_new_tokens=40, seed=0)
    assert text.startswith("jerry:")


@pytest.mark.slow
def test_shipped_model_matches_its_card(real_corpus):
    model = tvscript.load()
    card = card_figures()
    stream = load_corpus(str(real_corpus), vocab=model.vocab).streams["test"]
    report = evaluate_loss(model.model, stream, unk_id=model.vocab.unk_id, speller=speller_for(model.vocab))
    assert report.tokens == card["tokens"]
    assert report.perplexity == pytest.approx(card["perplexity"], rel=1e-3)
    assert report.bits_per_char == pytest.approx(card["bits_per_char"], rel=1e-3)
    assert report.oov_rate == pytest.approx(card["oov_rate"], rel=1e-6)
    assert model.meta["test"] == card  # config.json carries the same figures, for the web page


@pytest.mark.slow
def test_shipped_model_matches_its_card_under_adaptive_evaluation(real_corpus):
    """The card's second block: `tvscript evaluate --adapt --json`, default settings."""
    blocks = [b for b in card_blocks() if "adapt_bits_per_char" in b]
    assert len(blocks) == 1, "MODEL_CARD.md needs one ```json block from `tvscript evaluate --adapt --json`"
    card = blocks[0]
    config = AdaptConfig()
    assert {k: card[f"adapt_{k}"] for k in config.to_dict()} == config.to_dict()  # measured with today's defaults
    model = tvscript.load()
    stream = load_corpus(str(real_corpus), vocab=model.vocab).streams[card["split"]]
    report = adaptive_loss(model.model, stream, config, unk_id=model.vocab.unk_id, speller=speller_for(model.vocab))
    assert report.perplexity == pytest.approx(card["adapt_perplexity"], rel=2e-3)
    assert report.bits_per_char == pytest.approx(card["adapt_bits_per_char"], rel=1e-3)
