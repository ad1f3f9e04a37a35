"""model.py: shapes, initial loss ~ ln(V), overfitting a tiny corpus, state carry."""

from __future__ import annotations

import math

import pytest
import torch

from tvscript.errors import TvscriptError
from tvscript.model import LSTMLanguageModel, ModelConfig


@pytest.mark.parametrize("cutoffs", [(), (20, 60)])
def test_initial_loss_is_about_log_vocab(cutoffs):
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=200, embed_dim=16, hidden_dim=32, adaptive_cutoffs=cutoffs))
    idx = torch.randint(0, 200, (4, 12))
    logits, loss, state = model(idx, targets=torch.randint(0, 200, (4, 12)))
    assert abs(loss.item() - math.log(200)) < 0.5
    assert len(state) == 2 and state[0][0].shape == (1, 4, 32)
    logits, loss, _ = model(idx)
    assert logits.shape == (4, 200) and loss is None


def test_forward_in_pieces_equals_forward_at_once():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=50, embed_dim=8, hidden_dim=8)).eval()
    idx = torch.randint(0, 50, (2, 10))
    full, _, _ = model(idx)
    _, _, state = model(idx[:, :6])
    piece, _, _ = model(idx[:, 6:], state)
    assert torch.allclose(full, piece, atol=1e-6)


@pytest.mark.parametrize("tie", [False, True])
def test_tiny_model_overfits(tie):
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=12, embed_dim=24, hidden_dim=24, num_layers=1, tie_weights=tie))
    seq = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2, 3, 4, 5]])
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        _, loss, _ = model(seq[:, :-1], targets=seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    if tie:
        assert model.head.weight is model.embedding.weight


def test_padding_targets_are_ignored():
    model = LSTMLanguageModel(ModelConfig(vocab_size=30, embed_dim=8, hidden_dim=8, adaptive_cutoffs=(10,)))
    idx = torch.randint(0, 30, (1, 6))
    t = torch.randint(0, 30, (1, 6))
    _, a, _ = model(idx, targets=t)
    padded = torch.cat([t[:, :4], torch.full((1, 2), -100)], 1)
    _, b, _ = model(idx, targets=padded)
    _, c, _ = model(idx[:, :4], targets=t[:, :4])
    assert torch.allclose(b, c) and not torch.allclose(a, b)


def test_config_validation():
    with pytest.raises(TvscriptError, match="tied"):
        ModelConfig(vocab_size=100, tie_weights=True, adaptive_cutoffs=(10,))
    with pytest.raises(TvscriptError, match="dropout"):
        ModelConfig(vocab_size=100, dropout=1.5)


def test_bf16_autocast_loss_matches_fp32():
    """The adaptive head runs in fp32 under autocast; the loss stays within bf16 rounding."""
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=300, embed_dim=32, hidden_dim=32, adaptive_cutoffs=(50, 150)))
    idx, targets = torch.randint(0, 300, (4, 16)), torch.randint(0, 300, (4, 16))
    _, fp32, _ = model(idx, targets=targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, bf16, _ = model(idx, targets=targets)
    assert bf16.dtype == torch.float32
    assert abs(bf16.item() - fp32.item()) / fp32.item() < 0.01


def test_step_matches_forward():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=40, embed_dim=8, hidden_dim=12, num_layers=2,
                                          adaptive_cutoffs=(10,), dropout=0.5)).eval()
    idx = torch.randint(0, 40, (3, 5))
    _, _, state = model(idx[:, :4])
    expected, _, expected_state = model(idx[:, 4:], state)
    got, got_state = model.step(idx[:, 4], state)
    assert torch.allclose(expected, got, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for pa, pb in zip(expected_state, got_state) for a, b in zip(pa, pb))


def test_weight_drop_masks_the_recurrent_weights_in_training_only():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=30, embed_dim=8, hidden_dim=12, num_layers=2, weight_drop=0.5))
    plain = LSTMLanguageModel(ModelConfig(vocab_size=30, embed_dim=8, hidden_dim=12, num_layers=2))
    plain.load_state_dict(model.state_dict())
    idx, targets = torch.randint(0, 30, (2, 6)), torch.randint(0, 30, (2, 6))
    assert torch.equal(model.eval()(idx, targets=targets)[1], plain.eval()(idx, targets=targets)[1])

    model.train()
    torch.manual_seed(5)
    _, loss, _ = model(idx, targets=targets)
    torch.manual_seed(5)  # the same draws, made by hand: one (4H, H) mask per layer for the whole batch
    dropped = [torch.nn.functional.dropout(lstm.weight_hh_l0, 0.5, training=True).detach() for lstm in model.layers]
    with torch.no_grad():
        for lstm, w in zip(plain.layers, dropped):
            lstm.weight_hh_l0.copy_(w)
    _, expected, _ = plain.eval()(idx, targets=targets)
    assert torch.allclose(loss, expected, atol=1e-6) and not torch.allclose(loss, model.eval()(idx, targets=targets)[1])
    model.train()
    model(idx, targets=targets)[1].backward()
    assert all(lstm.weight_hh_l0.grad.abs().sum() > 0 for lstm in model.layers)
