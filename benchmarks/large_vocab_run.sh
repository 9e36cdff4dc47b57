#!/usr/bin/env bash
# The exact sequence behind the "Large output spaces" tables of docs/benchmarks.md: float32 rows
# first (2 rounds of the goal-defining variants at the small shape), then bfloat16. Resumable:
# re-running skips every (shape, dtype, scale, variant, round) already in $O.
# Usage: bash benchmarks/large_vocab_run.sh OUT.jsonl   (about 25 min on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PYTHON:-.venv/bin/python}
B=benchmarks/large_vocab.py
O=${1:?usage: bash benchmarks/large_vocab_run.sh OUT.jsonl}
$P $B --out "$O" --dtypes float32 --shapes small --rounds 2 --variants gemm_floor,losslab,naive,torch_lce_c1024
$P $B --out "$O" --dtypes float32 --shapes small --rounds 1 --variants torch_lce_default,torch_lce_c2048,cce_torch_compile
$P $B --out "$O" --dtypes float32 --shapes big --rounds 1 --large-logits-big-shape --variants gemm_floor,losslab,naive,torch_lce_c1024,torch_lce_c2048
$P $B --out "$O" --dtypes bfloat16 --shapes small --rounds 1 --variants losslab,naive,torch_lce_c1024
$P $B --out "$O" --dtypes bfloat16 --shapes big --rounds 1 --variants losslab,naive
$P $B --table --out "$O"
