"""The shipped Seinfeld model: it loads, fits the size budget, and matches its model card."""

from __future__ import annotations

import json
import re

import pytest

import tvscript
from tvscript.api import SHIPPED_MODEL
from tvscript.data import load_corpus
from tvscript.evaluate import evaluate_loss, speller_for


def card_figures() -> dict:
    """The JSON block under 'Test split' in MODEL_CARD.md (what `tvscript evaluate --json` printed)."""
    card = (SHIPPED_MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{.*?\})\n```", card, re.S)
    assert block, "MODEL_CARD.md has no ```json block with the test-split figures"
    return json.loads(block.group(1))


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
