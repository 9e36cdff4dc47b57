"""A small causal language model trained through the fused linear + cross-entropy head.

    python examples/integrations/lm_head.py [--steps 100] [--vocab 4096]

`losslab.heads.linear_cross_entropy(hidden, weight, tokens, shift=1)` computes the
next-token cross-entropy of `hidden @ weight.T` chunk by chunk, so the
(batch x time x vocabulary) logits are never held in memory; the un-embedding weight is
the (tied) embedding matrix. The synthetic sequences follow a fixed random successor
per token, which the model can learn from the current token alone.
"""

from __future__ import annotations

import argparse

import torch

from losslab.heads import linear_cross_entropy


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        # Tied weights: unit-variance embeddings would give logits of size ~dim.
        torch.nn.init.normal_(self.embed.weight, std=dim**-0.5)
        self.mix = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, D); the logits would be `hidden @ self.embed.weight.T`."""
        h = self.embed(tokens)
        return h + self.mix(h)


def sequences(n: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(vocab, generator=g)
    tokens = torch.empty(n, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(1, length):
        tokens[:, t] = successor[tokens[:, t - 1]]
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()

    torch.manual_seed(0)
    data = sequences(512, 32, args.vocab, seed=0)
    model = TinyLM(args.vocab, args.dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def lm_loss(tokens: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(model(tokens), model.embed.weight, tokens, shift=1)

    def training_loss() -> float:
        with torch.no_grad():
            return lm_loss(data).item()

    before = training_loss()
    for step in range(args.steps):
        idx = torch.randint(0, len(data), (16,), generator=torch.Generator().manual_seed(step))
        loss = lm_loss(data[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = training_loss()
    print(f"linear_cross_entropy: {args.steps} steps, loss before {before:.4f} after {after:.4f}")


if __name__ == "__main__":
    main()
