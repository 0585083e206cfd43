"""jaxconv.conv_lowering: every lowering of every pass is the same convolution as XLA's own.

The speed work may pick any lowering per pass and shape; these tests make sure that choice can
never change the numbers beyond float rounding: forward, input gradient and weight gradient of
each lowering (and of mixed plans, through the custom VJP) against ``lax.conv_general_dilated``
and its autodiff, in float32 and float64, over strides, paddings, dilations, groups, odd sizes,
and maps so small that some kernel taps only ever see padding.
"""

from __future__ import annotations

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import conv_lowering as cl
from jaxconv.layers import Conv2d

# (N, H, W, C_in, C_out, k, stride, padding, dilation, groups)
GEOMETRIES = [
    (2, 5, 5, 4, 6, 3, 1, 1, 1, 1),
    (2, 1, 1, 8, 4, 3, 1, 1, 1, 1),  # only the centre tap reads real input
    (2, 2, 2, 8, 4, 3, 1, 1, 1, 1),  # the 2x2 maps XLA:CPU is slow on
    (2, 7, 6, 3, 4, 7, 2, 3, 1, 1),  # stem-like 7x7 stride 2, non-square
    (2, 9, 9, 4, 8, 3, 2, 1, 1, 2),  # grouped, strided
    (2, 4, 4, 16, 16, 3, 2, 1, 1, 16),  # depthwise, strided
    (2, 6, 6, 4, 4, 1, 2, 0, 1, 1),  # strided 1x1 shortcut
    (2, 15, 15, 3, 5, 11, 4, 1, 1, 1),  # AlexNet's first layer, scaled down
    (2, 8, 8, 4, 4, 3, 1, 2, 2, 1),  # dilated
    (2, 3, 3, 4, 6, 5, 1, 2, 1, 1),  # kernel larger than the map
    (2, 1, 1, 3, 4, 3, 2, 2, 1, 1),  # live taps 0 and 2 only: tap 1 reads padding
]
# Each pass uses a different lowering in each plan, so three plans cover every (pass, lowering).
# A chunk of 1 image runs the chunked (lax.map / lax.scan) path of a pass.
PLANS = [
    cl.Plan(cl.Pass('xla'), cl.Pass('im2col', 1), cl.Pass('taps')),
    cl.Plan(cl.Pass('im2col'), cl.Pass('taps'), cl.Pass('xla')),
    cl.Plan(cl.Pass('taps', 1), cl.Pass('xla'), cl.Pass('im2col', 1)),
    cl.Plan(cl.Pass('direct'), cl.Pass('grouped', 1), cl.Pass('direct')),
    cl.Plan(cl.Pass('grouped'), cl.Pass('direct', 1), cl.Pass('grouped', 1)),
    cl.Plan(cl.Pass('s2d'), cl.Pass('s2d', 1), cl.Pass('s2d')),
    cl.Plan(cl.Pass('banded'), cl.Pass('banded', 1), cl.Pass('banded')),
    cl.Plan(cl.Pass('banded', 1), cl.Pass('banded'), cl.Pass('banded', 1)),  # big stems' chunks
    cl.Plan(cl.Pass('col2im', 1), cl.Pass('col2im'), cl.Pass('col2im', 1)),
]


def _case(geometry, dtype, seed=0):
    n, h, w, cin, cout, k, s, p, d, g = geometry
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, h, w, cin)), dtype)
    kernel = jnp.asarray(rng.standard_normal((k, k, cin // g, cout)), dtype)
    spec = cl.ConvSpec((s, s), (p, p), (d, d), g)
    dy = jnp.asarray(rng.standard_normal(cl.conv_xla(x, kernel, spec).shape), dtype)
    return x, kernel, dy, spec


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


CASES = [(g, 'float32') for g in GEOMETRIES] + [
    (g, 'float64') for g in GEOMETRIES[1:5]
]  # float64: the tap-dropping and group paths


@pytest.mark.parametrize(
    'geometry,dtype', CASES, ids=lambda v: v if isinstance(v, str) else 'x'.join(map(str, v))
)
def test_every_plan_matches_xla_forward_and_gradients(geometry, dtype):
    # x64 only inside this test: left on, it changed the dtypes later tests compute in.
    with jax.enable_x64(dtype == 'float64'):
        _check_every_plan(geometry, dtype)


def _check_every_plan(geometry, dtype):
    x, kernel, dy, spec = _case(geometry, dtype)

    @jax.jit
    def all_plans(x, kernel, dy):
        def vjp(fn):
            y, back = jax.vjp(fn, x, kernel)
            return (y, *back(dy))

        ref = vjp(lambda x, k: cl.conv_xla(x, k, spec))
        return ref, [vjp(lambda x, k, p=p: cl._mixed_conv(x, k, spec, p)) for p in PLANS]

    ref, results = all_plans(x, kernel, dy)
    tol = 2e-6 if dtype == 'float32' else 1e-12
    for plan, result in zip(PLANS, results):
        for name, got, want in zip(('y', 'dx', 'dw'), result, ref):
            assert got.shape == want.shape and got.dtype == want.dtype
            assert _rel(got, want) <= tol, (plan, name, _rel(got, want))


def test_live_taps_drop_only_taps_that_read_padding():
    assert cl._live_taps(1, 3, 1, 1, 1) == [1]  # 1x1 map: centre only
    assert cl._live_taps(2, 3, 1, 1, 1) == [0, 1, 2]  # 2x2 map: every tap reads something
    assert cl._live_taps(1, 7, 2, 3, 1) == [3]
    assert cl._live_taps(3, 5, 1, 2, 1) == [0, 1, 2, 3, 4]


def test_cpu_plan_avoids_xla_convolution_on_tiny_maps():
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    for shape in ((128, 2, 2, 512), (128, 1, 1, 512), (128, 3, 3, 64)):
        plan = cl.cpu_plan(shape, (3, 3, shape[-1], 512), spec)
        if shape[1] <= 2:
            assert all(p.lowering != 'xla' for p in plan), plan
    pointwise = cl.ConvSpec((1, 1), (0, 0), (1, 1), 1)
    assert cl.cpu_plan((128, 8, 8, 64), (1, 1, 64, 64), pointwise) == cl.Plan(
        *(cl.Pass('im2col'),) * 3
    )


def test_cpu_plan_runs_tiny_maps_as_one_im2col_matmul_and_4x4_weight_gradients_on_xla():
    # Measured in interleaved train-step A/Bs (benchmarks/README.md, AMD EPYC 2026-12-05): on
    # 2x2 and 1x1 maps one im2col matmul beats per-tap matmuls even at C_in >= 64; on 4x4 maps
    # XLA's weight gradient beats both matmul lowerings, while its input gradient does not.
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    for shape in ((128, 2, 2, 128), (128, 1, 1, 512)):
        plan = cl.cpu_plan(shape, (3, 3, shape[-1], 256), spec)
        assert plan.fwd == plan.dx == cl.Pass('im2col'), plan
        assert plan.dw.lowering != 'xla', plan
    plan = cl.cpu_plan((128, 4, 4, 96), (3, 3, 96, 128), spec)
    assert plan == cl.Plan(cl.Pass('xla'), cl.Pass('taps'), cl.Pass('xla')), plan


def test_cpu_plan_keeps_xla_weight_gradients_for_narrow_outputs_on_large_views():
    # Measured in interleaved train-step A/Bs (benchmarks/README.md, AMD EPYC 2026-12-06): a
    # large view (4 MB and more) with C_out = 32 trains faster with XLA's dW than with chunked
    # im2col, whose matmul has only C_out columns; at C_out = 64 (ResNet-18 at 64x64) chunked
    # im2col stays faster. (DenseNet's 160 -> 32, where this was measured, is now col2im.)
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    plan = cl.cpu_plan((128, 16, 16, 48), (3, 3, 48, 32), spec)
    assert plan == cl.Plan(cl.Pass('xla'), cl.Pass('xla'), cl.Pass('xla')), plan
    for x, w in (((128, 16, 16, 64), (3, 3, 64, 64)), ((128, 8, 8, 128), (3, 3, 128, 256))):
        plan = cl.cpu_plan(x, w, spec)
        assert plan.dw.lowering == 'im2col' and plan.dw.chunk is not None, plan


def test_cpu_plan_keeps_kernels_wider_than_the_map_off_xla_forward_and_dx():
    # GoogLeNet's 5x5 branch on a 4x4 map, and a 7x7 kernel on 6x6: XLA's forward and dx leave
    # their fast path when the kernel is larger than the map; a 5x5 kernel on 5x5 does not.
    same5, same7 = cl.ConvSpec((1, 1), (2, 2), (1, 1), 1), cl.ConvSpec((1, 1), (3, 3), (1, 1), 1)
    for x, w, spec in (
        ((128, 4, 4, 32), (5, 5, 32, 96), same5),
        ((8, 6, 6, 32), (7, 7, 32, 96), same7),
    ):
        plan = cl.cpu_plan(x, w, spec)
        assert plan.fwd.lowering != 'xla' and plan.dx.lowering != 'xla', plan
        assert plan.dw == cl.Pass('xla'), plan
    assert cl.cpu_plan((128, 5, 5, 32), (5, 5, 32, 96), same5).fwd == cl.Pass('xla')


def test_cpu_plan_moves_a_widening_convs_input_gradient_off_xla_on_small_maps():
    # AlexNet/NiN's 7x7x96->256 5x5 and GoogLeNet's 8x8x64->192 3x3: XLA's dx writes the few
    # C_in channels slowly; the forward and dW stay on XLA.
    same5, same3 = cl.ConvSpec((1, 1), (2, 2), (1, 1), 1), cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    for x, w, spec in (
        ((128, 7, 7, 96), (5, 5, 96, 256), same5),
        ((128, 8, 8, 64), (3, 3, 64, 192), same3),
    ):
        assert cl.cpu_plan(x, w, spec) == cl.Plan(cl.Pass('xla'), cl.Pass('taps'), cl.Pass('xla'))
    xla_dx = (
        ((128, 8, 8, 64), (3, 3, 64, 64), same3),  # not widening (ResNet-18)
        ((128, 8, 8, 128), (3, 3, 128, 256), same3),  # C_in >= XLA_DX_MIN_CHANNELS
        ((128, 16, 16, 64), (3, 3, 64, 128), same3),  # a large map (VGG-11): measured slower
        ((128, 16, 16, 64), (3, 3, 64, 128), cl.ConvSpec((2, 2), (1, 1), (1, 1), 1)),  # strided
    )
    for x, w, spec in xla_dx:
        assert cl.cpu_plan(x, w, spec).dx == cl.Pass('xla'), (x, w, spec)
    # LeNet's 6 -> 16, where per-tap and im2col dx measured slower, takes the banded matmul
    lenet = cl.cpu_plan((128, 16, 16, 6), (5, 5, 6, 16), cl.ConvSpec((1, 1), (0, 0), (1, 1), 1))
    assert lenet.dx == cl.Pass('banded')


def test_chunks_divide_the_batch_and_respect_the_budget():
    assert cl._chunk(128, 1.0, 1e9) is None  # fits whole: no chunking
    assert cl._chunk(128, 3 * 2**20, 8 * 2**20) == 2
    assert cl._chunk(100, 1 * 2**20, 8 * 2**20) == 5  # a divisor of 100
    assert cl._chunk(7, 9 * 2**20, 8 * 2**20) == 1


def test_off_cpu_every_pass_is_xla():
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    assert cl.plan((8, 2, 2, 16), (3, 3, 16, 16), spec, platform='gpu') == cl.Plan(
        *(cl.Pass('xla'),) * 3
    )


def test_forcing_a_lowering_and_recording_what_was_traced():
    layer = Conv2d(4, 8, 3, padding=1, rngs=__import__('flax').nnx.Rngs(0))
    x = jax.ShapeDtypeStruct((2, 2, 2, 4), jnp.float32)
    with cl.lowering('xla'), cl.recording() as calls:
        jax.eval_shape(layer, x)
    assert [c.plan for c in calls] == [cl.Plan(*(cl.Pass('xla'),) * 3)]
    assert calls[0].x_shape == (2, 2, 2, 4) and calls[0].w_shape == (3, 3, 4, 8)
    with pytest.raises(ValueError, match='unknown conv lowering'):
        with cl.lowering('winograd'):
            pass


def test_conv2d_layer_gradient_through_jit_matches_plain_xla():
    """The layer as the models use it: jit(grad) through the auto plan equals XLA's own."""
    from flax import nnx

    layer = Conv2d(8, 16, 3, padding=1, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 2, 2, 8)), jnp.float32)

    def loss(kernel, x, forced):
        with cl.lowering(forced):
            y = cl.conv2d(x, kernel, stride=(1, 1), padding=(1, 1))
        return jnp.sum(y**2)

    auto = jax.jit(jax.grad(lambda k, x: loss(k, x, None)))(layer.kernel[...], x)
    xla = jax.jit(jax.grad(lambda k, x: loss(k, x, 'xla')))(layer.kernel[...], x)
    assert _rel(auto, xla) <= 2e-6


# --------------------------------------------------------------------------------------------
# Modes and autotuning
# --------------------------------------------------------------------------------------------
from jaxconv import conv_autotune  # noqa: E402


def test_plans_print_and_parse_back():
    for plan in PLANS:
        assert cl.Plan.parse(str(plan)) == plan
    with pytest.raises(ValueError, match='not a conv'):
        cl.Plan.parse('xla/winograd/xla')


def test_the_mode_comes_from_the_environment_and_a_bad_one_names_the_choices(monkeypatch):
    monkeypatch.setenv(cl.MODE_ENV, 'taps')
    assert cl.mode() == 'taps'
    with cl.lowering('im2col'):
        assert cl.mode() == 'im2col'
    monkeypatch.setenv(cl.MODE_ENV, 'fastest')
    with pytest.raises(ValueError, match='autotune, heuristic, xla'):
        cl.mode()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A fresh autotuning cache directory, and no plan remembered by this process."""
    monkeypatch.setenv(conv_autotune.CACHE_ENV, str(tmp_path / 'cache'))
    conv_autotune.forget()
    yield tmp_path / 'cache'
    conv_autotune.forget()


def _traced_loss(x, kernel, spec, mode):
    def loss(x, kernel):
        with cl.lowering(mode):
            y = cl.conv2d(
                x,
                kernel,
                stride=spec.stride,
                padding=spec.padding,
                dilation=spec.dilation,
                groups=spec.groups,
            )
        return jnp.sum(y**2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, kernel)


@pytest.mark.parametrize(
    'geometry', [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[4]], ids=lambda g: 'x'.join(map(str, g))
)
def test_autotune_measures_once_caches_on_disk_and_computes_the_same(
    geometry, empty_cache, monkeypatch
):
    x, kernel, _, spec = _case(geometry, 'float32')
    tuned_before = conv_autotune.STATS.tuned
    got = _traced_loss(x, kernel, spec, 'autotune')
    want = _traced_loss(x, kernel, spec, 'xla')
    assert conv_autotune.STATS.tuned == tuned_before + 1
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert _rel(a, b) <= 2e-6

    # The cache file: readable JSON, keyed by the machine, every candidate's time recorded.
    files = list(empty_cache.glob('conv-plans-*.json'))
    assert len(files) == 1
    data = __import__('json').loads(files[0].read_text())
    assert data['machine'] == conv_autotune.machine_key()
    ((key, entry),) = data['plans'].items()
    assert key == cl.shape_key(x.shape, kernel.shape, spec, 'float32', 'cpu')
    plan = cl.Plan.parse(entry['plan'])
    rule = cl.cpu_plan(x.shape, kernel.shape, spec)
    for pass_, chosen, ruled in zip(conv_autotune.PASSES, plan, rule):
        timed = entry['ms'][pass_]
        fastest = min(timed, key=timed.get)
        # The fastest, or the fixed rule's pick when it is within the margin of the fastest.
        # The file rounds times to 0.1 µs, so two candidates of a tiny conv can tie there: the
        # chosen one must then have the fastest recorded time, whichever of them min() names.
        assert timed[str(chosen)] == timed[fastest] or (
            chosen == ruled and timed[str(ruled)] <= (1 + conv_autotune.MARGIN) * timed[fastest]
        )
        assert {
            str(c) for c in conv_autotune.candidates(x.shape, kernel.shape, spec, pass_)
        } <= timed.keys()

    # A new process (nothing in memory) reads the file and measures nothing.
    conv_autotune.forget()
    monkeypatch.setattr(conv_autotune, 'measure', lambda *a, **k: pytest.fail('re-measured'))
    with cl.lowering('autotune'):
        assert cl.plan(x.shape, kernel.shape, spec, 'cpu', 'float32') == plan


def test_candidates_leave_out_what_cannot_win_and_add_the_new_lowerings():
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    tiny = conv_autotune.candidates((128, 2, 2, 512), (3, 3, 512, 512), spec, 'fwd')
    assert cl.Pass('xla') not in tiny and cl.Pass('taps') in tiny
    assert cl.Pass('xla') in conv_autotune.candidates(
        (128, 2, 2, 512), (3, 3, 512, 512), spec, 'dw'
    )
    lenet = conv_autotune.candidates(
        (128, 28, 28, 1), (5, 5, 1, 6), cl.ConvSpec((1, 1), (2, 2), (1, 1), 1), 'fwd'
    )
    assert cl.Pass('direct') in lenet and cl.Pass('s2d') in lenet and cl.Pass('banded') in lenet
    assert cl.Pass('col2im') not in lenet  # widening: its tap products outgrow x
    dense = conv_autotune.candidates((128, 8, 8, 160), (3, 3, 160, 32), spec, 'dw')
    assert cl.Pass('col2im') in dense  # DenseNet's narrowing growth conv
    grouped = conv_autotune.candidates(
        (8, 8, 8, 64), (3, 3, 2, 64), cl.ConvSpec((1, 1), (1, 1), (1, 1), 32), 'dw'
    )
    assert cl.Pass('grouped') in grouped
    big = ((128, 32, 32, 64), (3, 3, 64, 64), spec)  # a 75 MB patch matrix
    assert conv_autotune.chunked(cl.Pass('im2col'), *big) == [
        cl.Pass('im2col', 32),
        cl.Pass('im2col', 8),
    ]
    assert conv_autotune.chunked(cl.Pass('xla'), *big) == []
    assert conv_autotune.chunked(cl.Pass('im2col'), (2, 4, 4, 8), (3, 3, 8, 8), spec) == []
    assert 2**15 <= conv_autotune.l2_cache_bytes() <= 2**30


def test_float64_and_shape_only_traces_never_autotune(empty_cache, monkeypatch):
    monkeypatch.setattr(conv_autotune, 'measure', lambda *a, **k: pytest.fail('measured'))
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    with cl.lowering('autotune'):
        assert cl.plan((2, 5, 5, 4), (3, 3, 4, 6), spec, 'cpu', 'float64') == cl.cpu_plan(
            (2, 5, 5, 4), (3, 3, 4, 6), spec
        )
        assert cl.plan((2, 5, 5, 4), (3, 3, 4, 6), spec, 'gpu', 'float32') == cl.Plan(
            *(cl.Pass('xla'),) * 3
        )
        from jaxconv.registry import create_model

        create_model('lenet', image_size=28)  # min-image-size check: eval_shape only


def test_fixed_plans_pin_a_recorded_plan_whatever_the_mode():
    spec = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    key = cl.shape_key((2, 5, 5, 4), (3, 3, 4, 6), spec, 'float32', 'cpu')
    pinned = cl.Plan(cl.Pass('taps'), cl.Pass('im2col', 1), cl.Pass('xla'))
    with cl.fixed_plans({key: str(pinned)}), cl.lowering('xla'):
        assert cl.plan((2, 5, 5, 4), (3, 3, 4, 6), spec, 'cpu', 'float32') == pinned
        assert cl.plan((2, 5, 5, 4), (3, 3, 4, 7), spec, 'cpu', 'float32') == cl.Plan(
            *(cl.Pass('xla'),) * 3
        )


def test_cpu_plan_moves_few_input_channel_convs_to_the_banded_matmul():
    valid = cl.ConvSpec((1, 1), (0, 0), (1, 1), 1)
    lenet_second = cl.cpu_plan((128, 16, 16, 6), (5, 5, 6, 16), valid)
    assert lenet_second == cl.Plan(*(cl.Pass('banded'),) * 3), lenet_second
    same = cl.ConvSpec((1, 1), (2, 2), (1, 1), 1)
    for lenet_first in ((128, 28, 28, 1), (5, 5, 1, 6)), ((128, 32, 32, 3), (5, 5, 3, 6)):
        plan = cl.cpu_plan(*lenet_first, same)  # forward and dW share one patch matrix
        assert plan == cl.Plan(*(cl.Pass('banded'),) * 3), (lenet_first, plan)
    vgg_stem = cl.cpu_plan((128, 32, 32, 3), (3, 3, 3, 64), cl.ConvSpec((1, 1), (1, 1), (1, 1), 1))
    assert cl.Pass('banded') not in vgg_stem  # 64 output channels: N is wide already
    wide = cl.cpu_plan((128, 16, 16, 6), (5, 5, 6, 64), valid)
    assert cl.Pass('banded') not in wide  # one output column already fills the matmul's N


def test_cpu_plan_moves_strided_three_channel_stems_to_banded_in_chunks_that_fit():
    resnet = cl.ConvSpec((2, 2), (3, 3), (1, 1), 1)
    stem = ((128, 32, 32, 3), (7, 7, 3, 64))
    assert cl.cpu_plan(*stem, resnet) == cl.Plan(*(cl.Pass('banded'),) * 3)
    # one output column per block at 64 channels out: kh row slices of kw·C_in each
    assert cl.banded_bytes(*stem, resnet) == 128 * 16 * 16 * 7 * 7 * 3 * 4
    nin = cl.cpu_plan((128, 67, 67, 3), (11, 11, 3, 96), cl.ConvSpec((4, 4), (0, 0), (1, 1), 1))
    assert nin == cl.Plan(*(cl.Pass('banded'),) * 3)
    # 73.5 MB of patches at 64²: banded on two chunks of 64 images, not XLA, whose dW ran 6x
    # slower (benchmarks/README.md, AMD EPYC AVX2 2026-12-07)
    big = ((128, 64, 64, 3), (7, 7, 3, 64))
    assert cl.banded_bytes(*big, resnet) > cl.BANDED_MAX_BYTES
    assert cl.cpu_plan(*big, resnet) == cl.Plan(*(cl.Pass('banded', 64),) * 3)
    tv = ((128, 224, 224, 3), (7, 7, 3, 64))  # torchvision's 224² stem: each chunk fits
    chunk = cl.cpu_plan(*tv, resnet).dw.chunk
    assert chunk and 128 % chunk == 0
    assert cl.banded_bytes((chunk, *tv[0][1:]), tv[1], resnet) <= cl.BANDED_MAX_BYTES
    assert cl.cpu_plan((32, 64, 64, 3), (7, 7, 3, 64), resnet).fwd == cl.Pass('banded')
    wide_in = cl.cpu_plan((128, 32, 32, 16), (7, 7, 16, 64), resnet)
    assert cl.Pass('banded') not in wide_in  # 16 channels in: K is wide enough for XLA


def test_cpu_plan_runs_narrowing_convs_on_col2im():
    # Measured (benchmarks/README.md, AMD EPYC 2026-12-07): DenseNet's growth convs (64..192
    # -> 32 on 8x8 and 4x4 maps) run every pass faster on col2im, whose patches come from the
    # 32-channel dy; the DenseNet train step 1.2x. Widening and equal-width convs lose on it.
    same = cl.ConvSpec((1, 1), (1, 1), (1, 1), 1)
    for x in ((128, 8, 8, 64), (128, 8, 8, 160), (128, 4, 4, 96), (32, 8, 8, 128)):
        plan = cl.cpu_plan(x, (3, 3, x[-1], 32), same)
        assert plan == cl.Plan(*(cl.Pass('col2im'),) * 3), (x, plan)
    assert cl.narrowing((128, 8, 8, 64), (3, 3, 64, 32), same)
    assert not cl.narrowing((128, 8, 8, 64), (3, 3, 64, 33), same)  # more than half C_in
    assert not cl.narrowing((128, 8, 8, 64), (3, 3, 64, 64), same)  # ResNet's 64 -> 64
    assert not cl.narrowing((128, 8, 8, 64), (3, 3, 64, 32), cl.ConvSpec((2, 2), (1, 1), (1, 1), 1))
    assert not cl.narrowing((128, 8, 8, 64), (1, 1, 64, 32), cl.ConvSpec((1, 1), (0, 0), (1, 1), 1))
    big = (128, 32, 32, 128)  # tap products of 302 MB at C_out 64: over COL2IM_MAX_BYTES
    assert not cl.narrowing(big, (3, 3, 128, 64), same)
    assert cl.Pass('col2im') not in cl.cpu_plan((128, 2, 2, 128), (3, 3, 128, 32), same)


def test_banded_blocks_keep_the_matmul_wide_and_cover_every_output_column():
    assert cl.banded_block(12, 16) == 4  # LeNet's second conv: 3 blocks, N = 64
    assert cl.banded_block(5, 6) == 5  # narrower than BANDED_COLUMNS: one block
    assert cl.banded_block(32, 64) == 1  # wide C_out: one column per block (im2col over rows)
    for width in range(1, 40):
        for cout in (1, 6, 16, 63):
            block = cl.banded_block(width, cout)
            assert 1 <= block <= width and -(-width // block) * block < width + block


def _jaxpr_eqns(jaxpr):
    """Every equation of a jaxpr and of the jaxprs nested in its equations (jit, custom_vjp)."""
    yield from jaxpr.eqns
    for sub in jax_core.subjaxprs(jaxpr):
        yield from _jaxpr_eqns(sub)


def _batched_dots(fn, *args) -> list[bool]:
    """For each dot_general in fn's jaxpr (forward and gradients): does it have batch dims?"""
    eqns = _jaxpr_eqns(jax.make_jaxpr(fn)(*args).jaxpr)
    return [bool(e.params['dimension_numbers'][1][0]) for e in eqns
            if e.primitive.name == 'dot_general']  # fmt: skip


@pytest.mark.parametrize('n', [2, 3])  # 3 images, 5 output rows, one block: M odd, unblocked
def test_banded_row_blocks_change_only_the_rounding_and_fall_back_on_odd_rows(monkeypatch, n):
    spec = cl.ConvSpec((2, 2), (3, 3), (1, 1), 1)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((n, 9, 9, 3)))
        w = jnp.asarray(rng.standard_normal((7, 7, 3, 4)))

        r = jnp.asarray(rng.standard_normal((n, 5, 5, 4)))  # weights every output differently
        results = {}
        for blocks in (1, 2):
            monkeypatch.setattr(cl, 'BANDED_ROW_BLOCKS', blocks)

            def loss(x, w):  # a new function each time: JAX caches traces per function
                return jnp.sum(jnp.sin(cl.conv_banded(x, w, spec)) * r)

            grads = jax.value_and_grad(loss, argnums=(0, 1))
            results[blocks] = grads(x, w)
            dots = _batched_dots(grads, x, w)
            assert dots and any(dots) == (blocks == 2 and n % 2 == 0), dots
    for a, b in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_space_to_depth_blocks_hold_each_kernel_tap_once_per_output_phase():
    # 5 taps, stride 1, 2x2 output blocks: a 3-block kernel; each (output phase q) column
    # holds every original tap exactly once, the rest are the appended zero (index k).
    index, blocks = cl._s2d_taps(5, 1, 2)
    assert blocks == 3 and index.shape == (3, 2, 2)
    for q in range(2):
        taps = sorted(t for t in index[:, :, q].ravel() if t < 5)
        assert taps == [0, 1, 2, 3, 4]
    index, blocks = cl._s2d_taps(11, 4, 1)  # AlexNet's stem: 3 blocks of 4 pixels
    assert blocks == 3 and sorted(t for t in index.ravel() if t < 11) == list(range(11))
