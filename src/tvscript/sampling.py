"""Next-token sampling as small pure functions with an explicit RNG.

Order of operations (as in Hugging Face's generate): banned tokens, repetition penalty,
temperature, top-k, then top-p within the top-k candidates. Nothing sorts the whole
vocabulary: top-k keeps at most ``MAX_CANDIDATES`` tokens even when only top-p is set.
"""

from __future__ import annotations

import torch

MAX_CANDIDATES = 1000  # nucleus is taken within this many most likely tokens


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: shrink the logits of tokens already in the sequence. seen: (N, V) bool."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def sample(
    logits: torch.Tensor,
    generator: torch.Generator,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | torch.Tensor = 1.0,
    repetition_penalty: float = 1.0,
    seen: torch.Tensor | None = None,
    banned: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row of logits (N, V); returns ids (N,). temperature 0 is greedy.

    ``top_p`` is one value for every row or one per row, (N,).
    """
    logits = logits.float()
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1)
    top_p = torch.as_tensor(top_p, dtype=torch.float32).expand(logits.size(0))  # (N,)
    nucleus = bool((top_p < 1.0).any())
    k = min(top_k or MAX_CANDIDATES, logits.size(-1))
    if top_k is None and not nucleus:
        k = logits.size(-1)  # plain sampling from the full distribution needs no sort at all
        cand_logits, cand_ids = logits / temperature, None
    else:
        cand_logits, cand_ids = torch.topk(logits / temperature, k, dim=-1)  # (N, k), sorted
    probs = torch.softmax(cand_logits, dim=-1)
    if nucleus and cand_ids is not None:
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        before = torch.cumsum(probs, dim=-1) - probs
        drop = before >= top_p[:, None]
        drop[..., 0] = False  # explicitly: a tiny top_p rounds to 0.0 in float32, which would drop it too
        probs = probs.masked_fill(drop, 0.0)
    choice = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (N,)
    return choice if cand_ids is None else cand_ids.gather(-1, choice[:, None]).squeeze(-1)
