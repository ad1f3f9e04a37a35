"""The language model: Embedding -> LSTM layers -> full or adaptive softmax.

``forward(idx, state, targets)`` returns ``(logits, loss, state)`` in the manner of
nanoGPT: with targets, the mean cross-entropy over every non-padding position; without,
the logits of the last position only (what sampling needs). Regularisation follows
AWD-LSTM: embedding dropout (whole word types), locked (variational) dropout on the
input, between layers and on the output, weight drop on the recurrent weights, and
optional tied input/output embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .errors import TvscriptError

State = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (h, c), each (1, B, H)
MAX_PARAMETERS = 4_000_000_000  # 16 GB of fp32 weights: far past any useful word-level LSTM
MAX_LAYERS = 64


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.0  # locked dropout between layers and on the output
    input_dropout: float = 0.0  # locked dropout on the embeddings
    embed_dropout: float = 0.0  # drops whole word types from the embedding matrix
    weight_drop: float = 0.0  # DropConnect on each layer's hidden-to-hidden weights, one mask per batch
    tie_weights: bool = False
    adaptive_cutoffs: tuple[int, ...] = ()  # empty: full softmax
    adaptive_div_value: float = 4.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adaptive_cutoffs", tuple(self.adaptive_cutoffs))
        # Checked before anything is allocated: a config may come from an untrusted config.json.
        for name in ("vocab_size", "embed_dim", "hidden_dim", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TvscriptError(f"{name} must be an integer, got {value!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in self.adaptive_cutoffs):
            raise TvscriptError(f"adaptive cutoffs must be integers, got {self.adaptive_cutoffs!r}")
        if self.vocab_size < 2 or min(self.embed_dim, self.hidden_dim, self.num_layers) < 1:
            raise TvscriptError("vocab size, embedding size, hidden size and layers must be positive")
        if self.num_layers > MAX_LAYERS:
            raise TvscriptError(f"num_layers must be at most {MAX_LAYERS}, got {self.num_layers}")
        if self.min_parameters() > MAX_PARAMETERS:
            raise TvscriptError(f"a model of at least {self.min_parameters():,} parameters is over the limit of "
                                f"{MAX_PARAMETERS:,}; use smaller --embed-dim/--hidden-dim/--num-layers")
        for p in (self.dropout, self.input_dropout, self.embed_dropout, self.weight_drop):
            if not 0.0 <= p < 1.0:
                raise TvscriptError(f"dropout must be in [0, 1), got {p}")
        if self.tie_weights and self.adaptive_cutoffs:
            raise TvscriptError("tied weights need the full softmax; drop the adaptive cutoffs")
        cutoffs = self.effective_cutoffs()
        if cutoffs and (list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] < 1):
            raise TvscriptError(f"adaptive cutoffs must increase within the vocabulary, got {cutoffs}")

    def min_parameters(self) -> int:
        """A lower bound on the parameter count (embedding and LSTM layers; the head is extra)."""
        sizes = [self.embed_dim] + [self.hidden_dim] * (self.num_layers - 1) + [self.output_dim]
        lstm = sum(4 * b * (a + b + 2) for a, b in zip(sizes, sizes[1:]))
        return self.vocab_size * self.embed_dim + lstm

    def effective_cutoffs(self) -> tuple[int, ...]:
        """Cutoffs that fit this vocabulary (a tiny vocabulary drops the larger ones)."""
        return tuple(c for c in self.adaptive_cutoffs if c < self.vocab_size - 1)

    @property
    def output_dim(self) -> int:
        return self.embed_dim if self.tie_weights else self.hidden_dim

    def to_dict(self) -> dict:
        return asdict(self)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """One dropout mask per sequence, shared across time steps. x: (B, T, D)."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)  # (B, 1, D)
    return x * mask


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        sizes = [c.embed_dim] + [c.hidden_dim] * (c.num_layers - 1) + [c.output_dim]
        # One nn.LSTM per layer so that dropout between layers can be locked.
        self.layers = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(c.num_layers))
        if c.effective_cutoffs():
            cutoffs = list(c.effective_cutoffs())
            self.head = nn.AdaptiveLogSoftmaxWithLoss(c.output_dim, c.vocab_size, cutoffs, c.adaptive_div_value, head_bias=True)
            # Start from the uniform distribution over all V words (loss ln V), as the full
            # softmax does: a cluster's head logit is the log of its size.
            sizes = torch.tensor([b - a for a, b in zip(cutoffs, cutoffs[1:] + [c.vocab_size])], dtype=torch.float)
            with torch.no_grad():
                self.head.head.bias.zero_()
                self.head.head.bias[cutoffs[0]:] = sizes.log()
        else:
            self.head = nn.Linear(c.output_dim, c.vocab_size)
            if c.tie_weights:
                self.head.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    @property
    def adaptive(self) -> bool:
        return isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return tuple(
            (torch.zeros(1, batch_size, lstm.hidden_size, device=device),
             torch.zeros(1, batch_size, lstm.hidden_size, device=device))
            for lstm in self.layers
        )

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight
        x = F.embedding(idx, weight)  # (B, T, E)
        p = self.config.embed_dropout
        if self.training and p > 0:
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)  # (V, 1): one draw per word type
            x = x * F.embedding(idx, keep)  # the same as masking the whole (V, E) matrix, at the cost of B*T rows
        return x

    def forward(
        self, idx: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, State]:
        x, new_state = self.hidden(idx, state)  # (B, T, D)
        if targets is None:
            return self.logits(x[:, -1]), None, new_state  # (B, V)
        h, t = x.reshape(-1, x.size(-1)), targets.reshape(-1)  # (B*T, D), (B*T,)
        valid = t >= 0
        if not bool(valid.all()):
            h, t = h[valid], t[valid]
        if self.adaptive:
            return None, self.token_nll(h, t).mean(), new_state
        logits = self.head(h)  # (N, V)
        return logits, F.cross_entropy(logits.float(), t), new_state

    def hidden(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """The top layer's outputs (B, T, D) for ids (B, T), and the state after them."""
        c = self.config
        if state is None:
            state = self.init_state(idx.size(0), idx.device)
        x = locked_dropout(self._embed(idx), c.input_dropout, self.training)  # (B, T, E)
        new_state = []
        for i, lstm in enumerate(self.layers):
            if self.training and c.weight_drop > 0:
                # The same dropped recurrent matrix at every time step (AWD-LSTM's weight drop),
                # passed in for this call so the fused LSTM kernel still runs.
                dropped = F.dropout(lstm.weight_hh_l0, c.weight_drop, training=True)  # (4H, H)
                x, s = functional_call(lstm, {"weight_hh_l0": dropped}, (x, state[i]))  # (B, T, H_i)
            else:
                x, s = lstm(x, state[i])  # (B, T, H_i)
            new_state.append(s)
            x = locked_dropout(x, c.dropout, self.training)
        return x, tuple(new_state)

    def token_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each target: h (N, D), targets (N,) -> (N,)."""
        if self.adaptive:
            # The adaptive head mixes dtypes under autocast (index_copy into an fp32
            # buffer), so it always runs in fp32.
            with torch.autocast(h.device.type, enabled=False):
                return -self.head(h.float(), targets).output  # output: the targets' log-probs
        return F.cross_entropy(self.head(h).float(), targets, reduction="none")

    @torch.inference_mode()
    def step(self, idx: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One generation step without dropout: ids (B,) -> next-token logits (B, V).

        Same numbers as ``forward`` on a length-1 sequence in eval mode, but through
        ``torch.lstm_cell``: oneDNN's sequence LSTM costs milliseconds of setup per call,
        ten times the arithmetic of a single step at batch 1.
        """
        x = self.embedding(idx)  # (B, E)
        new_state = []
        for lstm, (h, c) in zip(self.layers, state):
            h, c = torch.lstm_cell(x, (h[0], c[0]), lstm.weight_ih_l0, lstm.weight_hh_l0,
                                   lstm.bias_ih_l0, lstm.bias_hh_l0)  # (B, H) each
            new_state.append((h[None], c[None]))
            x = h
        return self.logits(x), tuple(new_state)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits (log-probabilities for the adaptive head) for h: (N, D)."""
        if self.adaptive:
            with torch.autocast(h.device.type, enabled=False):
                return self.head.log_prob(h.float())  # (N, V)
        return self.head(h).float()  # (N, V)


def detach(state: State) -> State:
    return tuple((h.detach(), c.detach()) for h, c in state)
