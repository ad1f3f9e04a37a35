"""sampling.py, generate.py and the Python API: seeds, options, primes, script form."""

from __future__ import annotations

import pytest
import torch

import tvscript
from tvscript.errors import TvscriptError
from tvscript.sampling import apply_repetition_penalty, sample


def test_sample_top_k_and_top_p_keep_only_the_best():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0, -2.0]]).repeat(200, 1)
    assert set(sample(logits, g, top_k=2).tolist()) == {0, 1}
    # p(0) ~ 0.73: top_p 0.5 keeps token 0 alone
    assert set(sample(logits, g, top_p=0.5).tolist()) == {0}
    assert set(sample(logits, g, temperature=0).tolist()) == {0}
    banned = torch.zeros(200, 5, dtype=torch.bool)
    banned[:, 0] = True
    assert set(sample(logits, g, temperature=0, banned=banned).tolist()) == {1}


def test_top_p_per_row():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0]]).repeat(400, 1)  # p ~ 0.40, 0.24, 0.15, 0.09, 0.05
    top_p = torch.tensor([0.5, 1.0]).repeat(200)  # even rows: nucleus 0.5; odd rows: the whole distribution
    ids = sample(logits, g, top_p=top_p)
    assert set(ids[0::2].tolist()) == {0, 1}  # the nucleus 0.5 holds the first two
    assert set(ids[1::2].tolist()) == {0, 1, 2, 3, 4}


def test_sampling_is_reproducible_with_explicit_rng():
    logits = torch.randn(4, 50)
    a = sample(logits, torch.Generator().manual_seed(7), top_k=10)
    b = sample(logits, torch.Generator().manual_seed(7), top_k=10)
    assert torch.equal(a, b)


def test_repetition_penalty_shrinks_seen_logits():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 1.0]]


def test_seeded_generation_repeats(tiny_run):
    model = tvscript.load(tiny_run)
    a = model.generate("jerry", max_new_tokens=40, seed=3)
    assert a == model.generate("Jerry:", max_new_tokens=40, seed=3)
    assert a.startswith("jerry:")
    assert "".join(model.stream("jerry", max_new_tokens=40, seed=3)).rstrip("\n") == a.rstrip("\n")
    others = {model.generate("jerry", max_new_tokens=40, seed=s) for s in range(4, 9)}
    assert len(others) > 1


def test_generation_carries_state_one_step_per_word(tiny_run, monkeypatch):
    """The prime runs once; every new word is one model step on one token per sequence."""
    model = tvscript.load(tiny_run)
    cls = type(model.model)
    calls = []
    real_forward, real_step = cls.forward, model.step  # the int8 stepper where the CPU has it

    def spy_forward(self, idx, state=None, targets=None):
        calls.append(("forward", tuple(idx.shape)))
        return real_forward(self, idx, state, targets)

    def spy_step(idx, state):
        calls.append(("step", tuple(idx.shape)))
        return real_step(idx, state)

    monkeypatch.setattr(cls, "forward", spy_forward)
    model.step = spy_step
    model.generate("jerry: hello buddy\ngeorge:", max_new_tokens=30, seed=0, structured=False)
    assert calls[0] == ("forward", (1, 5))  # the prime, once
    assert calls[1:] == [("step", (1,))] * 29  # the 30th word needs no further step


def test_num_return_sequences_and_max_lines(tiny_run):
    model = tvscript.load(tiny_run)
    result = model.generate_batch("elaine", max_new_tokens=200, num_return_sequences=3, seed=1, max_lines=2)
    assert len(result.texts) == 3 and result.seed == 1
    for text in result.texts:
        assert len(text.strip("\n").split("\n")) == 2
    single = model.generate_batch("elaine", max_new_tokens=50)
    assert isinstance(single.seed, int)


def test_structured_output_is_well_formed(tiny_run):
    model = tvscript.load(tiny_run)
    speakers = set(model.speakers())
    for seed in range(5):
        text = model.generate("jerry", max_new_tokens=80, seed=seed, temperature=1.2, top_p=1.0)
        for line in text.strip("\n").split("\n"):
            name, sep, said = line.partition(": ")
            assert sep and name in speakers and said.strip(), line
            assert line.count("(") == line.count(")") and "<unk>" not in line
    text = model.generate("jerry", max_new_tokens=120, seed=1, cast=("george", "elaine"), no_self_reply=True)
    names = [line.split(":")[0] for line in text.strip().split("\n")]
    assert set(names[1:]) <= {"george", "elaine"}
    assert all(a != b for a, b in zip(names[1:], names[2:]))


@pytest.mark.parametrize("prime, message", [
    ("xyzzy plugh", "none of the prime's words"),
    ("\U0001F600\U0001F600", "none of the prime's words"),
    ("bob sacamano:", "unknown speaker"),
])
def test_bad_primes_get_clear_errors(tiny_run, prime, message):
    with pytest.raises(TvscriptError, match=message):
        tvscript.load(tiny_run).generate(prime)


@pytest.mark.parametrize("options, message", [
    (dict(top_p=1.5), "top_p"), (dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(cast=("nobody",)), "unknown cast"), (dict(foo=1), "foo"),
])
def test_bad_options(tiny_run, options, message):
    with pytest.raises(TvscriptError, match=message):
        tvscript.load(tiny_run).generate("jerry", **options)


def test_partly_unknown_prime_is_a_note(tiny_run, capsys):
    text = tvscript.load(tiny_run).generate("jerry: hello zorblax", max_new_tokens=5, seed=0)
    assert text.startswith("jerry: hello <unk>")
    assert "zorblax" in capsys.readouterr().err


def test_self_reply_penalty_lowers_only_the_previous_speaker(tiny_run):
    from tvscript.generate import ScriptForm

    vocab = tvscript.load(tiny_run).vocab
    jerry, george = vocab.stoi["jerry:"], vocab.stoi["george:"]
    form = ScriptForm(vocab, 2)
    form.update(torch.tensor([jerry, george]))  # row 0: jerry speaks, row 1: george
    logits = torch.zeros(2, len(vocab))
    assert torch.equal(form.penalise_self_reply(logits, 2.0), logits)  # mid-turn: nothing to do
    form.update(torch.tensor([vocab.eot_id, vocab.eot_id]))  # both turns end
    out = form.penalise_self_reply(logits, 2.0)
    assert out[0, jerry] == -2.0 and out[1, george] == -2.0
    assert int((out != 0).sum()) == 2 and not bool(logits.any())  # the input is left alone


def test_self_reply_penalty_option(tiny_run):
    model = tvscript.load(tiny_run)

    def self_replies(**options) -> int:
        count = 0
        for seed in range(8):
            text = model.generate("jerry", max_new_tokens=60, seed=seed, temperature=1.5, top_p=1.0,
                                  cast=("jerry", "george"), repetition_penalty=1.0, **options)
            names = [line.split(":")[0] for line in text.strip().split("\n")]
            count += sum(a == b for a, b in zip(names, names[1:]))
        return count

    free, penalised = self_replies(self_reply_penalty=0.0), self_replies(self_reply_penalty=50.0)
    assert free > 0 and penalised == 0
    with pytest.raises(TvscriptError, match="self_reply_penalty"):
        model.generate("jerry", self_reply_penalty=-1.0)
