"""The reference course-project recipe, rebuilt as the benchmarks' baseline (an importable module).

The recipe, as the classic "TV script generation" project does it:

* data: every 10-word window of the token stream (stride 1) is one example, and the word
  right after it is its single target: a TensorDataset of (windows, targets) behind a
  shuffled DataLoader, 128 windows a batch;
* model: Embedding(V, 256) -> LSTM(256, 256, 2 layers, batch_first) -> Linear(256, V); the
  Linear runs on all 10 positions and only the last position's logits enter the loss;
* training: cross-entropy, Adam (lr 0.002), gradient norm clipped at 5, and a fresh zero
  hidden state for every batch (nothing carries over between windows);
* generation: a 10-word window (padding, then the prime word); for every new word the
  whole window runs through the model again from a zero state, the softmax's 5 most likely
  words are sampled by their renormalised probabilities, and the window slides by one.

Words and ids come from tvscript's tokenizer and vocabulary (``load_corpus(min_freq=1)``,
every training word kept, as the reference keeps them), so numbers compare with tvscript's.
Where the reference pads the generation window with its own padding token, this uses the
end-of-turn token (tvscript's vocabulary has no padding token; a turn boundary is the
natural "nothing before this"). Evaluation (``window_nll``) scores every target with the
model's own inference mode: the preceding 10 words (fewer at the very start), zero state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

WINDOW = 10
BATCH_SIZE = 128
LR = 0.002
CLIP = 5.0
TOP_K = 5


@dataclass(frozen=True)
class BaselineConfig:
    vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.0  # between the LSTM layers (nn.LSTM's own dropout)


class WindowLSTM(nn.Module):
    """Embedding -> stacked LSTM -> Linear over every position; the last position is the prediction."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        c = self.config = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, dropout=c.dropout, batch_first=True)
        self.fc = nn.Linear(c.hidden_dim, c.vocab_size)

    def init_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config.num_layers, batch_size, self.config.hidden_dim)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, x: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple]:
        """x: (B, T) ids -> last position's logits (B, V). All T positions are projected, as the recipe does."""
        out, hidden = self.lstm(self.embedding(x), hidden)  # (B, T, H)
        logits = self.fc(out)  # (B, T, V): the recipe's cost, though only the last position is used
        return logits[:, -1], hidden

    def next_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The same numbers as forward() from a zero state, projecting only the last position (for evaluation)."""
        out, _ = self.lstm(self.embedding(x), self.init_hidden(x.size(0)))
        return self.fc(out[:, -1])  # (B, V)


def new_model(vocab_size: int, seed: int = 0) -> WindowLSTM:
    torch.manual_seed(seed)
    return WindowLSTM(BaselineConfig(vocab_size))


def new_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=LR)


def make_windows(ids: torch.Tensor, window: int = WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of the stream (stride 1) and the word after it: (N, window), (N,)."""
    inputs = ids[:-1].unfold(0, window, 1).contiguous()  # materialised, as the reference's dataset is
    return inputs, ids[window:].clone()


def make_loader(ids: torch.Tensor, batch_size: int = BATCH_SIZE, seed: int = 0) -> DataLoader:
    """Shuffled batches of (windows, targets); the last partial batch is dropped (the hidden state has a fixed batch)."""
    return DataLoader(TensorDataset(*make_windows(ids)), batch_size=batch_size, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


def endless(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches epoch after epoch (each epoch reshuffled)."""
    while True:
        yield from loader


def train_step(model: WindowLSTM, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One step of the recipe: zero state, forward, loss on the last position, clip, Adam."""
    model.train()
    logits, _ = model(x, model.init_hidden(x.size(0)))
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    return loss.item()


def train_for(model: WindowLSTM, ids: torch.Tensor, seconds: float, seed: int = 0) -> dict[str, float]:
    """Train on the stream until the wall-clock budget is spent (checked after every step)."""
    optimizer = new_optimizer(model)
    loader = make_loader(ids, seed=seed)
    start = time.perf_counter()
    steps, loss_sum = 0, 0.0
    for x, y in endless(loader):
        loss_sum += train_step(model, optimizer, x, y)
        steps += 1
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    return {"steps": steps, "tokens": steps * BATCH_SIZE, "train_seconds": elapsed,
            "epochs": steps / len(loader), "mean_train_loss": loss_sum / max(steps, 1)}


@torch.inference_mode()
def window_nll(next_log_probs: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor,
               window: int = WINDOW, batch_size: int = 512) -> tuple[float, int]:
    """Total NLL (nats) and count of every target ids[1:], each given the preceding ``window`` words.

    next_log_probs maps (B, T) ids to (B, V) log-probabilities of the next word. The first
    window - 1 targets have fewer words before them and are scored with what there is.
    """
    nll, count = 0.0, 0
    for i in range(1, min(window, len(ids))):  # short contexts at the start of the stream
        nll -= next_log_probs(ids[None, :i])[0, ids[i]].item()
        count += 1
    inputs, targets = make_windows(ids, window) if len(ids) > window else (ids[:0, None], ids[:0])
    for start in range(0, len(targets), batch_size):
        x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
        nll -= next_log_probs(x).gather(1, y[:, None]).double().sum().item()
        count += len(y)
    return nll, count


@torch.inference_mode()
def generate(model: WindowLSTM, prime_id: int, pad_id: int, num_words: int, seed: int = 0,
             window: int = WINDOW, top_k: int = TOP_K) -> Iterator[int]:
    """Yield num_words new word ids, one full-window forward pass (fresh zero state) each."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    seq = torch.full((1, window), pad_id, dtype=torch.long)
    seq[0, -1] = prime_id
    for _ in range(num_words):
        logits, _ = model(seq, model.init_hidden(1))  # (1, V)
        probs, candidates = F.softmax(logits, dim=-1).topk(top_k)  # (1, k) each
        word = candidates[0, torch.multinomial(probs[0] / probs.sum(), 1, generator=generator)].item()
        yield word
        seq = torch.roll(seq, -1, dims=1)
        seq[0, -1] = word
