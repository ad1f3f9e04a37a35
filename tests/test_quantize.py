"""quantize.py: int8 weights for generation agree with the fp32 model, and fall back cleanly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tvscript
from tvscript import quantize
from tvscript.model import LSTMLanguageModel, ModelConfig
from tvscript.quantize import Int8Linear, Int8Stepper, stepper_for

needs_kernel = pytest.mark.skipif(not quantize.int8_supported(), reason="no int8 kernel in this torch build/CPU")


@needs_kernel
@given(rows=st.integers(1, 9), inputs=st.integers(1, 300), outputs=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_int8_linear_matches_float(rows, inputs, outputs, seed):
    """Any inner size works (the kernel itself needs multiples of 16: padded)."""
    g = torch.Generator().manual_seed(seed)
    w, b, x = torch.randn(outputs, inputs, generator=g), torch.randn(outputs, generator=g), torch.randn(rows, inputs, generator=g)
    exact = x @ w.T + b  # (rows, outputs)
    got = Int8Linear(w, b)(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    # Rounding bounds: a weight moves by at most half its row's step (max |w| / 254), an
    # activation by 2^-9 of itself in bf16, the sum by 2^-9 of itself on the way out.
    steps = x.abs().sum(-1, keepdim=True) * w.abs().amax(-1) / 254  # (rows, outputs)
    tolerance = steps + (x.abs() @ w.abs().T) * 2**-8 + exact.abs() * 2**-8 + 1e-4
    assert bool(((got - exact).abs() <= 1.5 * tolerance).all())


@needs_kernel
@pytest.mark.parametrize("head", [dict(adaptive_cutoffs=(20, 60)), dict(tie_weights=True, embed_dim=40), dict()])
def test_int8_stepper_tracks_the_model(head):
    torch.manual_seed(0)
    config = ModelConfig(**{**dict(vocab_size=150, embed_dim=24, hidden_dim=40, num_layers=2), **head})
    model = LSTMLanguageModel(config).eval()
    for p in model.parameters():  # trained weights are larger than the initial ones
        p.data.normal_(0, 0.3)
    stepper = Int8Stepper(model)
    state_a = state_b = model.init_state(3)
    ids = torch.randint(0, 150, (20, 3))
    for x in ids:
        a, state_a = model.step(x, state_a)
        b, state_b = stepper(x, state_b)
        assert a.shape == b.shape == (3, 150)
        assert (a - b).abs().max() < 0.15  # a few hundredths typically
        if model.adaptive:
            assert torch.allclose(b.exp().sum(-1), torch.ones(3), atol=1e-4)  # still a distribution
    for (ha, ca), (hb, cb) in zip(state_a, state_b):
        assert (ha - hb).abs().max() < 0.05 and (ca - cb).abs().max() < 0.1


def test_stepper_for_falls_back_to_fp32(monkeypatch):
    model = LSTMLanguageModel(ModelConfig(vocab_size=40, embed_dim=16, hidden_dim=16)).eval()
    assert stepper_for(model, int8=False) == model.step
    monkeypatch.setattr(quantize, "int8_supported", lambda: False)
    assert stepper_for(model) == model.step


def test_load_uses_int8_unless_asked_not_to(tiny_run):
    fp32 = tvscript.load(tiny_run, int8=False)
    assert fp32.step == fp32.model.step
    if quantize.int8_supported():
        fast = tvscript.load(tiny_run)
        assert isinstance(fast.step, Int8Stepper)
        assert fast.generate("jerry", max_new_tokens=30, seed=2) == fast.generate("jerry", max_new_tokens=30, seed=2)


@needs_kernel
@pytest.mark.slow
def test_shipped_model_loss_is_unchanged_by_int8(real_corpus):
    """Stepping the shipped model through 3,000 test-split tokens: the mean loss moves by < 0.005 nats."""
    from tvscript.data import load_corpus

    model = tvscript.load(int8=False)
    stepper = Int8Stepper(model.model)
    ids = load_corpus(str(real_corpus), vocab=model.vocab).streams["test"].ids[:3001]
    totals = []
    for step in (model.model.step, stepper):
        state, nll = model.model.init_state(1), 0.0
        with torch.inference_mode():
            for t in range(len(ids) - 1):
                logp, state = step(ids[t : t + 1], state)
                nll -= logp[0, ids[t + 1]].item()
        totals.append(nll / (len(ids) - 1))
    assert 3.0 < totals[0] < 6.0  # a trained model, not a uniform one (ln V is ~9.9)
    assert abs(totals[1] - totals[0]) < 0.005
