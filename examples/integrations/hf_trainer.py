"""A Hugging Face `Trainer` whose `compute_loss` uses a losslab loss.

    python examples/integrations/hf_trainer.py [--loss focal] [--steps 60]

Needs `transformers` and `accelerate` (`pip install -e ".[integrations]"`). The model is
a small BERT built from a config (no download), trained on synthetic token sequences
whose label is the first token modulo 4. `compute_loss` takes the labels out of the
batch, runs the model and applies the loss to its logits; the loss module is built once
with the trainer.
"""

from __future__ import annotations

import argparse
import os
import tempfile

# Nothing here needs the Hub: fail fast instead of trying to reach it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import losslab


class Sequences(Dataset):
    def __init__(self, n: int, length: int, vocab: int, classes: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.labels = self.ids[:, 0] % classes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class LosslabTrainer(Trainer):
    def __init__(self, *args, loss_fn: torch.nn.Module, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="focal")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()

    torch.manual_seed(0)
    data = Sequences(512, length=8, vocab=32, classes=4, seed=0)
    config = BertConfig(
        vocab_size=32,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=4,
    )
    model = BertForSequenceClassification(config)
    loss_fn = losslab.build_loss(args.loss)

    def training_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = loss_fn(model(input_ids=data.ids).logits, data.labels).item()
        model.train()
        return value

    before = training_loss()
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=32,
            learning_rate=3e-3,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        LosslabTrainer(model=model, args=training_args, train_dataset=data, loss_fn=loss_fn).train()
    print(f"{args.loss}: {args.steps} steps, loss before {before:.4f} after {training_loss():.4f}")


if __name__ == "__main__":
    main()
