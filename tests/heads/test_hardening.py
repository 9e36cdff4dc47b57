"""Issue 9, item 8: the heads reject nonsense options and non-finite inputs, and a call that
raises changes no state. One test per numbered defect of the issue."""

from __future__ import annotations

import inspect
import math
import os
import re
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losslab.heads import (
    HeadOptions,
    LinearCrossEntropy,
    SphericalOutput,
    linear_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)
from losslab.heads._engine import OPTION_NAMES, takes_options

FN = "linear_cross_entropy"


def _data(n=12, d=5, v=9, dtype=torch.float32, bias=False):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g).to(dtype)
    w = torch.randn(v, d, generator=g).to(dtype)
    b = torch.randn(v, generator=g).to(dtype) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    return h, w, y, b


# -- defect 1-2: z_loss finite (nan would be ignored, inf would give inf/NaN) ----------------------
@pytest.mark.parametrize("z_loss", [math.nan, math.inf, -1e-4])
def test_z_loss_must_be_finite_and_non_negative(z_loss):
    h, w, y, _ = _data()
    with pytest.raises(
        ValueError, match=rf"{FN}: z_loss expected a real number in \[0, inf\), got {z_loss}"
    ):
        linear_cross_entropy(h, w, y, z_loss=z_loss)


# -- defect 3: softcap finite (inf would give inf/NaN) ---------------------------------------------
@pytest.mark.parametrize("softcap", [math.inf, math.nan, 0.0, -1.0])
def test_softcap_must_be_finite_and_positive(softcap):
    h, w, y, _ = _data()
    with pytest.raises(ValueError, match=rf"{FN}: softcap expected a real number in \(0, inf\)"):
        linear_cross_entropy(h, w, y, softcap=softcap)


# -- defect 4: chunk sizes are integers (2.5 rows is no chunk) -------------------------------------
@pytest.mark.parametrize("name", ["chunk_size", "vocab_chunk_size"])
def test_chunk_sizes_must_be_integers(name):
    h, w, y, _ = _data()
    with pytest.raises(TypeError, match=rf"{FN}: {name} expected an integer >= 1 or None, got 2.5"):
        linear_cross_entropy(h, w, y, **{name: 2.5})
    with pytest.raises(ValueError, match=rf"{name} expected an integer >= 1 or None, got 0"):
        linear_cross_entropy(h, w, y, **{name: 0})


# -- defect 5: ignore_index is an integer (-100.5 matches no target) -------------------------------
def test_ignore_index_must_be_an_integer():
    h, w, y, _ = _data()
    with pytest.raises(TypeError, match=rf"{FN}: ignore_index expected an integer, got -100.5"):
        linear_cross_entropy(h, w, y, ignore_index=-100.5)


# -- defect 6: shift below the sequence length (else no position is left: a silent 0) --------------
@pytest.mark.parametrize("shift", [4, 5, 9])
def test_shift_must_be_below_the_sequence_length(shift):
    h = torch.randn(2, 4, 3)
    w = torch.randn(6, 3)
    y = torch.randint(0, 6, (2, 4))
    with pytest.raises(
        ValueError,
        match=rf"{FN}: shift expected an integer in \[0, 3\] \(below the sequence length T=4\), "
        rf"got {shift}",
    ):
        linear_cross_entropy(h, w, y, shift=shift)
    assert linear_cross_entropy(h, w, y, shift=3).item() > 0  # one position left: still a loss


# -- defect 7: hidden, weight and bias finite (like the logits of the loss API) --------------------
@pytest.mark.parametrize("name", ["hidden", "weight", "bias"])
@pytest.mark.parametrize(("bad", "text"), [(math.nan, "NaN values"), (-math.inf, "infinite")])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_non_finite_inputs_rejected(name, bad, text, reduction):
    h, w, y, b = _data(bias=True)
    inputs = {"hidden": h, "weight": w, "bias": b}
    inputs[name].view(-1)[3] = bad
    with pytest.raises(ValueError, match=rf"{FN}: {name} expected finite values, got {text}"):
        linear_cross_entropy(h, w, y, bias=b, reduction=reduction)
    # validate=False skips the (host-syncing) value checks, as for the target range
    out = linear_cross_entropy(h, w, y, bias=b, reduction=reduction, validate=False)
    assert not torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_finite_half_inputs_are_no_false_alarm(dtype):
    # the sum of these finite values overflows float16 (max 65504): the check sums in float32
    h, w, y, _ = _data(n=64, d=8, v=16, dtype=dtype)
    h.fill_(60000.0 if dtype == torch.float16 else 1e38)
    w.fill_(1e-4)
    linear_cross_entropy(h, w, y)


def test_float32_sum_overflow_is_cleared_elementwise():
    h, w, y, _ = _data()
    h.fill_(3e38)  # finite, but their float32 sum is inf: the element-wise pass clears it
    w.fill_(1e-38)
    linear_cross_entropy(h, w, y, reduction="sum")


def test_value_checks_skipped_while_compiling(monkeypatch):
    h, w, y, _ = _data()
    h[0, 0] = math.nan
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.isnan(linear_cross_entropy(h, w, y))


# -- the options object and the module -------------------------------------------------------------
def test_options_object_checks_and_signatures_show_every_option():
    with pytest.raises(ValueError, match="HeadOptions: z_loss expected"):
        HeadOptions(z_loss=math.nan)
    with pytest.raises(TypeError, match="HeadOptions: validate expected True or False, got 1"):
        HeadOptions(validate=1)  # type: ignore[arg-type]
    names = [f for f in HeadOptions.__dataclass_fields__]
    for fn, omit in (
        (linear_cross_entropy, ()),
        (LinearCrossEntropy.__init__, ()),
        (vocab_parallel_linear_cross_entropy, ("impl",)),
    ):
        params = inspect.signature(fn).parameters
        shown = [p for p in params if p in names]
        assert shown == [n for n in names if n not in omit], fn
        for n in shown:
            assert params[n].default == getattr(HeadOptions(), n)
            assert params[n].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_signature_that_drifts_from_the_options_fails_at_import():
    def missing(*, ignore_index: int = -100) -> None: ...

    def other_default(*, ignore_index: int = -1) -> None: ...

    text = "the head options must be keyword-only parameters"
    with pytest.raises(TypeError, match=text):
        takes_options()(missing)  # the other options are not declared
    with pytest.raises(TypeError, match=text):
        takes_options(omit=OPTION_NAMES[1:])(other_default)
    takes_options(omit=OPTION_NAMES[1:])(missing)  # exactly the remaining option


def test_module_rejects_nonsense_and_a_failed_assignment_changes_nothing():
    with pytest.raises(ValueError, match=r"LinearCrossEntropy: z_loss expected"):
        LinearCrossEntropy(z_loss=math.nan)
    mod = LinearCrossEntropy(z_loss=1e-3, chunk_size=4)
    before = mod.get_config()
    with pytest.raises(ValueError, match=r"LinearCrossEntropy: softcap expected"):
        mod.softcap = math.inf
    with pytest.raises(TypeError, match=r"LinearCrossEntropy: chunk_size expected"):
        mod.chunk_size = 2.5
    assert mod.get_config() == before
    mod.z_loss = 1e-2  # a valid assignment takes effect, like a constructor argument
    assert mod.z_loss == 1e-2 and mod.options.z_loss == 1e-2
    h, w, y, _ = _data()
    torch.testing.assert_close(mod(h, w, y), linear_cross_entropy(h, w, y, **mod.get_config()))


# -- vocab-parallel: the same checks, and every rank raises together -------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expect(fn, exc, text):
    try:
        fn()
    except exc as e:
        assert text in str(e), str(e)
    else:
        raise AssertionError(f"no {exc.__name__} ({text})")


def _worker(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    # a short timeout: a rank that skipped a check would leave the other waiting in a collective
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        fn = "vocab_parallel_linear_cross_entropy"
        h, w, y, _ = _data(n=8, d=4, v=10)
        start, stop = (0, 5) if rank == 0 else (5, 10)

        def run(h=h, w_s=w[start:stop], y=y, **kw):
            return vocab_parallel_linear_cross_entropy(
                h, w_s, y, vocab_start=start, vocab_size=10, **kw
            )

        _expect(lambda: run(z_loss=math.nan), ValueError, f"{fn}: z_loss expected")
        _expect(lambda: run(softcap=math.inf), ValueError, f"{fn}: softcap expected")
        _expect(lambda: run(chunk_size=2.5), TypeError, f"{fn}: chunk_size expected")
        _expect(lambda: run(ignore_index=-100.5), TypeError, f"{fn}: ignore_index expected")
        _expect(
            lambda: run(h=h.view(2, 4, 4), y=y.view(2, 4), shift=4),
            ValueError,
            f"{fn}: shift expected",
        )
        _expect(lambda: run(z_loss=1e-3, impl="cce"), TypeError, "impl")  # not an option here
        w_bad = w[start:stop].clone()
        if rank == 1:  # only one rank's slice is bad: both must raise, neither may hang
            w_bad[2, 1] = math.nan
        _expect(lambda: run(w_s=w_bad), ValueError, f"{fn}: weight expected finite values")
        y_bad = y.clone()
        y_bad[0] = 10
        _expect(lambda: run(y=y_bad), ValueError, "(10 classes in total)")
        assert torch.isfinite(run())  # the group is still usable
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_vocab_parallel_rejects_nonsense_on_every_rank():
    mp.spawn(_worker, args=(_free_port(),), nprocs=2, join=True)


# -- SphericalOutput -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "text"),
    [
        (dict(a=math.nan), "a expected a real number in (0, inf)"),
        (dict(b=math.inf), "b expected a real number in (-inf, inf)"),
        (dict(eps=math.nan), "eps expected a real number in [0, inf)"),
        (dict(init_std=math.inf), "init_std expected"),
    ],
)
def test_spherical_options_must_be_finite(kw, text):
    with pytest.raises(ValueError, match=re.escape(f"SphericalOutput: {text}")):
        SphericalOutput(4, 10, **kw)


def test_spherical_from_weight_rejects_non_finite_weight():
    w = torch.randn(10, 4)
    w[3, 1] = math.inf
    with pytest.raises(
        ValueError, match=r"SphericalOutput\.from_weight: weight expected finite values, got NaN or"
    ):
        SphericalOutput.from_weight(w)


def _state(head: SphericalOutput):
    return (
        [t.clone() for t in (head.A, head.U, head.omega, head.Q, head.wbar)],
        len(head._pending),
        head._version,
    )


def _same(a, b):
    (ta, pa, va), (tb, pb, vb) = a, b
    assert pa == pb and va == vb
    for x, y in zip(ta, tb, strict=True):
        assert torch.equal(x, y)


def test_spherical_non_finite_h_raises_and_records_nothing():
    torch.manual_seed(0)
    head = SphericalOutput(4, 10, dtype=torch.float64)
    head(torch.randn(3, 4, dtype=torch.float64), torch.tensor([1, 2, 3])).backward()
    before = _state(head)
    h = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        h[1, 2] = math.nan
    with pytest.raises(ValueError, match="SphericalOutput: h expected finite values, got NaN"):
        head(h, torch.tensor([1, 2, 3]))
    _same(_state(head), before)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -0.1])
def test_spherical_bad_lr_raises_and_changes_nothing(lr):
    torch.manual_seed(0)
    head = SphericalOutput(4, 10, dtype=torch.float64)
    head(torch.randn(3, 4, dtype=torch.float64), torch.tensor([1, 2, 3])).backward()
    before = _state(head)
    with pytest.raises(ValueError, match=r"SphericalOutput.step: lr expected a real number"):
        head.step(lr)
    _same(_state(head), before)
    head.step(0.1)  # the recorded gradients are still there and apply normally
    assert not head._pending and head._version == before[2] + 1


def test_spherical_failed_step_changes_nothing(monkeypatch):
    torch.manual_seed(0)
    head = SphericalOutput(4, 10, dtype=torch.float64)
    head(torch.randn(3, 4, dtype=torch.float64), torch.tensor([1, 2, 3])).backward()
    before = _state(head)

    def singular(*args, **kwargs):
        raise torch.linalg.LinAlgError("singular")

    monkeypatch.setattr(torch.linalg, "solve", singular)
    with pytest.raises(torch.linalg.LinAlgError):
        head.step(0.1)
    _same(_state(head), before)
