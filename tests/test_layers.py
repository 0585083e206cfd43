"""Each torch-exact layer against the torch layer of the same name, on random inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxconv import layers as L
from parity import to_flax

RNG = np.random.default_rng(0)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def nhwc(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def assert_close(a, b, tol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(b).max(), 1e-12)
    assert np.abs(a - b).max() / scale <= tol, np.abs(a - b).max() / scale


@pytest.mark.parametrize(
    'cin,cout,k,stride,pad,dil,groups',
    [
        (3, 8, 3, 1, 1, 1, 1),
        (4, 6, 3, 2, 1, 1, 2),
        (4, 8, (5, 3), (2, 1), (2, 1), 1, 4),
        (6, 6, 3, 2, 1, 2, 6),
        (3, 5, 1, 1, 0, 1, 1),
        (3, 4, 7, 2, 3, 1, 1),
    ],
)
def test_conv2d_matches_torch(cin, cout, k, stride, pad, dil, groups):
    tconv = torch.nn.Conv2d(cin, cout, k, stride, pad, dil, groups)
    conv = L.Conv2d(cin, cout, k, stride, pad, dil, groups, rngs=nnx.Rngs(0))
    seq_t, seq_f = torch.nn.Sequential(tconv), L.Sequential(conv)
    to_flax(seq_t, seq_f)
    x = RNG.standard_normal((2, 11, 10, cin)).astype(np.float32)
    assert_close(conv(jnp.asarray(x)), nhwc(tconv(nchw(x))))


def test_conv2d_stride2_even_input_is_symmetric_not_same():
    # 'SAME' would pad (0, 1) here; torch pads (1, 1), so the first output sees the top-left pad.
    conv = L.Conv2d(1, 1, 3, stride=2, padding=1, bias=False, rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.ones((3, 3, 1, 1), jnp.float32)
    y = conv(jnp.ones((1, 4, 4, 1)))
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], [[4, 6], [6, 9]])


def test_conv2d_rejects_bad_groups():
    with pytest.raises(ValueError, match='divisible by groups'):
        L.Conv2d(6, 4, 3, groups=4, rngs=nnx.Rngs(0))


POOL_CASES = [  # (H, W, kernel, stride, padding, ceil_mode)
    (8, 8, 2, None, 0, False),
    (7, 9, 3, 2, 1, False),
    (7, 9, 3, 2, 1, True),
    (14, 14, 3, 2, 0, True),
    (13, 6, (3, 2), (2, 1), (1, 1), True),
    (5, 5, 3, 3, 1, True),
    (6, 11, 2, 2, 0, True),
    (4, 4, 3, None, 0, False),
    (10, 10, 3, 1, 1, False),
]


@pytest.mark.parametrize('h,w,k,s,p,ceil', POOL_CASES)
def test_maxpool_matches_torch(h, w, k, s, p, ceil):
    x = RNG.standard_normal((2, h, w, 3)).astype(np.float32)
    ref = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(nchw(x))
    assert_close(L.MaxPool2d(k, s, p, ceil_mode=ceil)(jnp.asarray(x)), nhwc(ref), 0)


@pytest.mark.parametrize('count_include_pad', [True, False])
@pytest.mark.parametrize('h,w,k,s,p,ceil', POOL_CASES)
def test_avgpool_matches_torch(h, w, k, s, p, ceil, count_include_pad):
    x = RNG.standard_normal((2, h, w, 3)).astype(np.float32)
    ref = torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)(nchw(x))
    out = L.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)(jnp.asarray(x))
    assert_close(out, nhwc(ref), 1e-6)


def test_pool_stride_defaults_to_kernel():
    assert L.MaxPool2d(3).stride == (3, 3) and L.AvgPool2d((2, 3)).stride == (2, 3)


def test_pool_rejects_too_much_padding():
    with pytest.raises(ValueError, match='at most half'):
        L.MaxPool2d(2, padding=2)(jnp.zeros((1, 8, 8, 1)))


@pytest.mark.parametrize(
    'h,w,oh,ow',
    [
        (7, 7, 1, 1),
        (10, 7, 3, 4),
        (13, 13, 6, 6),
        (5, 9, 7, 7),
        (14, 11, 5, 3),
        (7, 7, 7, 7),
        (1, 1, 2, 3),
    ],
)
def test_adaptive_avgpool_matches_torch(h, w, oh, ow):
    x = RNG.standard_normal((2, h, w, 4)).astype(np.float32)
    ref = torch.nn.AdaptiveAvgPool2d((oh, ow))(nchw(x))
    assert_close(L.AdaptiveAvgPool2d((oh, ow))(jnp.asarray(x)), nhwc(ref), 1e-6)


def test_adaptive_bins_are_torch_formula():
    assert L.adaptive_bins(10, 3) == [(0, 4), (3, 7), (6, 10)]
    assert L.adaptive_bins(5, 7) == [(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5)]


def test_flatten_is_chw_order():
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(L.Flatten()(jnp.asarray(x)), nchw(x).flatten(1).numpy())


@pytest.mark.parametrize('n,h', [(2, 1), (2, 3), (5, 4)])
def test_batchnorm_train_and_eval_match_torch(n, h):
    c = 6
    tbn = torch.nn.BatchNorm2d(c)
    with torch.no_grad():
        tbn.weight.uniform_(0.5, 1.5), tbn.bias.uniform_(-1, 1)
    bn = L.BatchNorm2d(c)
    to_flax(torch.nn.Sequential(tbn), L.Sequential(bn))
    rng = np.random.default_rng(n * 10 + h)
    for step in range(3):  # statistics accumulate over several steps
        x = (rng.standard_normal((n, h, h, c)) * 3 + 1).astype(np.float32)
        assert_close(bn(jnp.asarray(x)), nhwc(tbn(nchw(x))), 1e-5)
        assert_close(bn.mean[...], tbn.running_mean.numpy(), 1e-6)
        assert_close(bn.var[...], tbn.running_var.numpy(), 1e-6)  # the UNBIASED estimate
        assert int(bn.num_batches_tracked[...]) == int(tbn.num_batches_tracked) == step + 1
    bn.use_running_average = True
    tbn.eval()
    x = rng.standard_normal((n, h, h, c)).astype(np.float32)
    assert_close(bn(jnp.asarray(x)), nhwc(tbn(nchw(x))), 1e-5)


def test_batchnorm_single_value_per_channel_fails_like_torch():
    with pytest.raises(ValueError, match='more than 1 value'):
        L.BatchNorm2d(3)(jnp.zeros((1, 1, 1, 3)))


def test_batchnorm_float64():
    jax.config.update('jax_enable_x64', True)
    try:
        bn = L.BatchNorm2d(2, dtype=jnp.float64)
        assert bn(jnp.ones((2, 2, 2, 2), jnp.float64)).dtype == jnp.float64
        assert bn.var[...].dtype == jnp.float64
    finally:
        jax.config.update('jax_enable_x64', False)


def test_dropout_is_inverted_and_switchable():
    d = L.Dropout(0.25, rngs=nnx.Rngs(0))
    y = np.asarray(d(jnp.ones((200, 200))))
    assert set(np.unique(y).tolist()) <= {0.0, np.float32(1 / 0.75).item()}
    assert abs((y == 0).mean() - 0.25) < 0.01
    d.eval()
    np.testing.assert_array_equal(d(jnp.ones((3, 3))), np.ones((3, 3)))
    mask = jnp.asarray(RNG.integers(0, 2, (3, 3)) * 2.0, jnp.float32)
    d.train()
    np.testing.assert_array_equal(d.forward(jnp.ones((3, 3)), mask=mask), mask)


def test_tap_sees_every_layer_in_order():
    seq = L.Sequential(L.Conv2d(1, 2, 3, padding=1, rngs=nnx.Rngs(0)), L.ReLU(), L.Flatten())
    seen = []
    with L.tap(lambda layer, y: seen.append((type(layer).__name__, y.shape))):
        seq(jnp.ones((1, 4, 4, 1)))
    assert seen == [('Conv2d', (1, 4, 4, 2)), ('ReLU', (1, 4, 4, 2)), ('Flatten', (1, 32))]
    assert [n for n, _ in L.named_layers(seq)] == ['0', '1', '2']


def test_ceil_mode_window_may_overhang_a_small_input_like_torch():
    # torch: a 3×3/2 ceil_mode pool turns a 2×2 map into 1×1 (GoogLeNet relies on it).
    for k in range(1, 6):
        for s in range(1, 4):
            for size in range(1, 8):
                for ceil in (False, True):
                    x = RNG.standard_normal((1, size, size, 2)).astype(np.float32)
                    try:
                        ref = torch.nn.functional.max_pool2d(nchw(x), k, s, 0, ceil_mode=ceil)
                    except RuntimeError:
                        with pytest.raises(ValueError):
                            L.MaxPool2d(k, s, 0, ceil_mode=ceil)(jnp.asarray(x))
                        continue
                    assert_close(L.MaxPool2d(k, s, 0, ceil_mode=ceil)(jnp.asarray(x)), nhwc(ref), 0)


def test_to_flax_copies_instead_of_aliasing_torch_memory():
    tbn = torch.nn.BatchNorm2d(3)
    bn = L.BatchNorm2d(3)
    to_flax(torch.nn.Sequential(tbn), L.Sequential(bn))
    with torch.no_grad():
        tbn.running_mean.add_(5.0)
        tbn.bias.add_(1.0)
    np.testing.assert_array_equal(bn.mean[...], np.zeros(3))
    np.testing.assert_array_equal(bn.bias[...], np.zeros(3))


@pytest.mark.parametrize(
    'pool', [L.MaxPool2d(3, 2, 1, ceil_mode=True), L.AvgPool2d(3, 2, 1), L.AvgPool2d(2)]
)
def test_pools_are_differentiable_under_jit(pool):
    x = jnp.asarray(RNG.standard_normal((2, 7, 7, 3)), jnp.float32)
    g = jax.jit(jax.grad(lambda x: (pool(x) ** 2).sum()))(x)
    tx = nchw(np.asarray(x)).requires_grad_()
    tpool = (
        torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        if isinstance(pool, L.MaxPool2d)
        else torch.nn.AvgPool2d(pool.kernel_size, pool.stride, pool.padding)
    )
    (tpool(tx) ** 2).sum().backward()
    assert_close(g, nhwc(tx.grad), 1e-6)


@pytest.mark.parametrize('h,w,k,s,p,ceil', POOL_CASES)
def test_maxpool_gradient_with_ties_goes_where_torchs_goes(h, w, k, s, p, ceil):
    # Integers from a small range: most windows hold several equal maxima (and ReLU-like
    # zeros). torch sends each output's gradient to the first maximum in scan order; JAX's own
    # max rule would split it among the ties.
    x = RNG.integers(0, 3, (2, h, w, 3)).astype(np.float32)
    dy_shape = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(nchw(x)).shape
    dy = RNG.standard_normal(dy_shape).astype(np.float32)
    tx = nchw(x).requires_grad_()
    torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)(tx).backward(torch.from_numpy(dy))
    pool = L.MaxPool2d(k, s, p, ceil_mode=ceil)
    _, back = jax.vjp(pool, jnp.asarray(x))
    (g,) = jax.jit(back)(jnp.asarray(nhwc(torch.from_numpy(dy))))
    np.testing.assert_array_equal(np.asarray(g), nhwc(tx.grad))


@pytest.mark.parametrize('count_include_pad', [True, False])
@pytest.mark.parametrize('h,w,k,s,p,ceil', POOL_CASES)
def test_avgpool_gradient_matches_torch(h, w, k, s, p, ceil, count_include_pad):
    x = RNG.standard_normal((2, h, w, 3)).astype(np.float32)
    tpool = torch.nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    tx = nchw(x).requires_grad_()
    (tpool(tx) ** 2).sum().backward()
    pool = L.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    g = jax.jit(jax.grad(lambda x: (pool(x) ** 2).sum()))(jnp.asarray(x))
    assert_close(g, nhwc(tx.grad), 1e-6)


@pytest.mark.parametrize('k,s,p', [(3, 2, 1), (3, 1, 1), (3, 2, 0)])
def test_maxpool_gradient_sums_shared_maxima_in_torchs_order(k, s, p):
    # Spikes on the cells that several overlapping windows share: each spike is the maximum of
    # up to 4 (stride 2) or 9 (stride 1) windows, and its gradient is the sum of theirs.
    # float64 sums of 3+ terms depend on their order; torch adds them output by output in
    # raster order, and so must jaxconv, bit for bit.
    jax.config.update('jax_enable_x64', True)
    try:
        x = RNG.standard_normal((2, 11, 11, 3)) * 1e-3
        x[:, ::2, ::2] += 10 + RNG.standard_normal((2, 6, 6, 3))
        x[:, 1::4, 1::4] += 30  # a spike ringed by the others: the max of all 9 windows (s=1)
        tx = nchw(x).requires_grad_()
        ty = torch.nn.MaxPool2d(k, s, p)(tx)
        dy = RNG.standard_normal(ty.shape)
        ty.backward(torch.from_numpy(dy))
        _, back = jax.vjp(L.MaxPool2d(k, s, p), jnp.asarray(x))
        (g,) = jax.jit(back)(jnp.asarray(nhwc(torch.from_numpy(dy))))
        assert g.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(g), nhwc(tx.grad))
    finally:
        jax.config.update('jax_enable_x64', False)


def test_pool_gradient_divide_keeps_every_value_bit_for_bit():
    from jaxconv.pooling import _computed_once

    dy = jnp.array([0.0, -0.0, -3.5, 1e38, 1.2e-38, jnp.inf, -jnp.inf, 1e-45, jnp.nan])
    out = np.asarray(jax.jit(_computed_once)(dy))
    normal = slice(0, 7)  # signed zeros, normal numbers and infinities: the same bits
    np.testing.assert_array_equal(
        out[normal].view(np.uint32), np.asarray(dy)[normal].view(np.uint32)
    )
    assert out[7] in (0.0, np.float32(1e-45))  # a subnormal: XLA:CPU's arithmetic flushes it
    assert np.isnan(out[8])
