"""The fake quantizers against their definitions, on random weights (hypothesis)."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from prom_tvm.qat import quantizers  # noqa: E402
from prom_tvm.qat.quantizers import (  # noqa: E402
    activation_qparams,
    dequantize_weight,
    int8_codes,
    straight_through,
    ternary_codes,
)

shapes = st.sampled_from([(4, 3, 1, 1), (8, 16, 1, 1), (5, 1, 3, 3), (7, 12)])


def _weights(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), threshold=st.floats(0.3, 1.2))
def test_twn_definition(shape, seed, threshold):
    w = _weights(shape, seed)
    codes, scale = ternary_codes(w, "twn", threshold)
    flat, c = w.reshape(shape[0], -1), codes.reshape(shape[0], -1)
    keep = flat.abs() > threshold * flat.abs().mean(1, keepdim=True)
    assert torch.equal(c, torch.where(keep, torch.sign(flat), torch.zeros_like(flat)))
    for ch in range(shape[0]):
        if keep[ch].any():
            assert scale[ch] == pytest.approx(flat[ch][keep[ch]].abs().mean().item(), rel=1e-6)
    assert scale.dtype == torch.float32 and bool((scale > 0).all())


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_absmean_definition(shape, seed):
    w = _weights(shape, seed)
    codes, scale = ternary_codes(w, "absmean")
    flat = w.reshape(shape[0], -1)
    gamma = flat.abs().mean(1)
    assert torch.allclose(scale, gamma)
    expect = torch.clamp(torch.round(flat / gamma[:, None]), -1, 1)
    assert torch.equal(codes.reshape(shape[0], -1), expect)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), exponent=st.integers(-6, 6),
       method=st.sampled_from(["twn", "absmean"]))
def test_ternary_commutes_with_channel_scaling(shape, seed, exponent, method):
    """Folding a positive per-channel factor (BatchNorm) keeps the ternary pattern."""
    w = _weights(shape, seed)
    factor = 2.0 ** exponent  # a power of two scales float32 exactly
    codes, scale = ternary_codes(w, method)
    codes2, scale2 = ternary_codes(w * factor, method)
    assert torch.equal(codes, codes2)
    assert torch.equal(scale * factor, scale2)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_int8_round_trip_error_is_half_a_step(shape, seed):
    w = _weights(shape, seed)
    codes, scale = int8_codes(w)
    assert codes.abs().max() <= 127
    assert torch.equal(codes.reshape(shape[0], -1).abs().amax(1), torch.full((shape[0],), 127.0))
    err = (dequantize_weight(codes, scale) - w).reshape(shape[0], -1).abs().amax(1)
    assert bool((err <= scale * 0.5 * (1 + 1e-5)).all())


def test_zero_channel_gets_unit_scale_and_zero_codes():
    w = torch.zeros(2, 4, 1, 1)
    w[1] = 1.0
    for codes, scale in (ternary_codes(w, "twn"), ternary_codes(w, "absmean"), int8_codes(w)):
        assert scale[0] == 1.0 and not codes[0].any()


def test_straight_through_gradient_is_identity():
    w = torch.randn(3, 4, requires_grad=True)
    codes, scale = ternary_codes(w)
    out = straight_through(w, dequantize_weight(codes, scale))
    g = torch.randn(3, 4)
    out.backward(g)
    assert torch.equal(w.grad, g)
    assert torch.equal(out.detach(), dequantize_weight(codes, scale))


@settings(max_examples=50, deadline=None)
@given(lo=st.floats(-50, 50), span=st.floats(1e-3, 100))
def test_activation_range_holds_zero_exactly(lo, span):
    min_val, max_val = torch.tensor(lo), torch.tensor(lo + span)
    scale, zp = activation_qparams(min_val, max_val)
    assert 0 <= int(zp) <= 255
    x = torch.tensor([0.0, lo, lo + span])
    xq = torch.fake_quantize_per_tensor_affine(x, scale, zp.to(torch.int32), 0, 255)
    assert xq[0] == 0.0  # zero is representable
    tol = float(scale) * 0.5 + 1e-6
    assert np.all(np.abs((xq - x).numpy()) <= tol + abs(lo + span) * 1e-6)


def test_docstring_examples():
    result = doctest.testmod(quantizers)
    assert result.attempted > 0 and result.failed == 0
