"""A PyTorch Lightning `LightningModule` that trains with a losslab loss.

    python examples/integrations/lightning_module.py [--loss gce] [--steps 100]

Needs `lightning` (`pip install -e ".[integrations]"`). The loss is a submodule of the
LightningModule, so its buffers (class weights, a stateful loss's per-example state)
move with the model to the trainer's device. The data set yields each example's index,
which stateful losses (`aldr_kl`) take as `index=`; the others ignore it.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import losslab


def synthetic(n: int, dim: int, classes: int, seed: int):
    """Features and labels of a random linear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return x, (x @ torch.randn(dim, classes, generator=g)).argmax(1)


class Classifier(L.LightningModule):
    def __init__(self, loss: str, num_samples: int, lr: float = 0.1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)
        )
        self.spec = losslab.loss_info(loss)
        self.loss_fn = self.spec.build(num_samples=num_samples)
        self.lr = lr

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, index = batch
        extra = {"index": index} if self.spec.stateful else {}
        return self.loss_fn(self.net(x), y, **extra)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="gce")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()

    L.seed_everything(0, verbose=False)
    x, y = synthetic(1024, 16, 4, seed=0)
    data = TensorDataset(x, y, torch.arange(len(x)))
    model = Classifier(args.loss, num_samples=len(x))

    def training_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = model.loss((x, y, torch.arange(len(x)))).item()
        model.train()
        return value

    before = training_loss()
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=64, shuffle=True))
    print(f"{args.loss}: {args.steps} steps, loss before {before:.4f} after {training_loss():.4f}")


if __name__ == "__main__":
    main()
