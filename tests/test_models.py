"""Registry, constructor arguments, structure facts from the course, and input checking."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.models import ImageSizeError, create_model, list_models, min_image_size, register_model
from jaxconv.summary import count_params

COURSE_MODELS = [
    'alexnet',
    'densenet',
    'googlenet',
    'lenet',
    'mlp',
    'mlp_dropout',
    'nin',
    'resnet18',
    'resnext',
    'vgg11',
]


def test_course_models_registered():
    names = list_models()
    assert set(COURSE_MODELS) <= set(names)
    assert {'vgg13', 'vgg16', 'vgg19'} <= set(names)  # the VGG cfg table gives them for free
    assert names == sorted(names)
    assert list_models('vgg*') == ['vgg11', 'vgg11_bn', 'vgg13', 'vgg16', 'vgg19']


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match='already registered'):
        register_model(lambda **kw: None, name='lenet')


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match='unknown model .*lenet'):
        create_model('lenet6')


@pytest.mark.parametrize('arg', ['num_classes', 'in_channels', 'image_size'])
@pytest.mark.parametrize('value', [0, -3, 2.5])
def test_bad_constructor_arguments(arg, value):
    with pytest.raises(ValueError, match=arg):
        create_model('lenet', **{arg: value})


def test_mlp_parameter_count_is_the_notes():
    # The notes: 1,574,402 trainable parameters ([1572864, 512, 1024, 2]).
    model = create_model('mlp', num_classes=2, in_channels=3, image_size=32)
    sizes = [int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
    assert sorted(sizes) == sorted([1572864, 512, 1024, 2])
    assert count_params(model) == 1_574_402


def test_mlp_outputs_log_probabilities():
    model = create_model('mlp', num_classes=2, image_size=8)
    y = model(jnp.ones((3, 8, 8, 3)))
    np.testing.assert_allclose(np.exp(np.asarray(y)).sum(1), 1.0, rtol=1e-6)


def test_dropout_mlp_depth_is_configurable():
    model = create_model('mlp_dropout', image_size=8, depth=5, width=16)
    kinds = [type(layer).__name__ for layer in model.net.layers]
    assert kinds.count('Dropout') == 5 and kinds.count('Linear') == 6


def test_densenet_transitions_accumulate_channels():
    # The torch code halves the accumulated count: 96/112/120 (d2l's JAX port gets 96/96/96).
    assert create_model('densenet').transition_channels == (96, 112, 120)


def test_resnext_groups_is_the_number_of_groups():
    model = create_model('resnext', groups=8, bot_mul=0.5)
    conv2 = model.net.layers[1].layers[0].conv2
    assert conv2.groups == 8 and conv2.kernel[...].shape == (3, 3, 32 // 8, 32)
    with pytest.raises(ValueError, match='divisible by groups'):
        create_model('resnext', groups=7)


def test_vgg11_bn_is_vgg11_with_batchnorm_after_every_conv():
    from jaxconv.layers import BatchNorm2d, Conv2d, named_layers

    plain, bn = create_model('vgg11'), create_model('vgg11_bn')
    kinds = [type(m) for _, m in named_layers(bn)]
    convs = [i for i, k in enumerate(kinds) if k is Conv2d]
    assert len(convs) == 8 and all(kinds[i + 1] is BatchNorm2d for i in convs)
    assert kinds.count(BatchNorm2d) == 8
    assert count_params(bn) == count_params(plain) + 2 * (64 + 128 + 2 * 256 + 4 * 512)


def test_models_name_themselves_as_registered():
    for name in ['lenet', 'vgg11_bn', 'resnext', 'tv_vgg11_bn']:
        assert create_model(name).arch == name


def test_googlenet_has_nine_inception_blocks():
    from jaxconv.models.googlenet import Inception

    model = create_model('googlenet')
    assert sum(isinstance(m, Inception) for _, m in nnx.iter_modules(model)) == 9


@pytest.mark.parametrize(
    'name,minimum',
    [('lenet', 12), ('vgg11', 32), ('alexnet', 65), ('nin', 67), ('densenet', 29), ('resnet18', 1)],
)
def test_minimum_image_size_is_named(name, minimum):
    assert min_image_size(name) == minimum
    if minimum > 1:
        with pytest.raises(ImageSizeError, match=f'{name} needs image_size >= {minimum}'):
            create_model(name, image_size=minimum - 1)
        create_model(name, image_size=minimum)


@pytest.mark.parametrize('name', ['lenet', 'resnet18', 'mlp'])
def test_wrong_input_shape_names_expected_and_actual(name):
    model = create_model(name, in_channels=1, image_size=28)
    with pytest.raises(
        ValueError, match=r'expects NHWC input of shape .*1\).*got \(2, 28, 28, 3\)'
    ):
        model(jnp.ones((2, 28, 28, 3)))
    with pytest.raises(ValueError, match=r'got \(28, 28, 1\)'):
        model(jnp.ones((28, 28, 1)))


def test_fixed_size_models_reject_other_sizes():
    with pytest.raises(ValueError, match=r'\(N, 28, 28, 1\).*\(2, 32, 32, 1\)'):
        create_model('lenet', in_channels=1, image_size=28)(jnp.ones((2, 32, 32, 1)))


def test_models_are_deterministic_in_the_seed():
    a = create_model('lenet', rngs=nnx.Rngs(3))
    b = create_model('lenet', rngs=nnx.Rngs(3))
    c = create_model('lenet', rngs=nnx.Rngs(4))
    ka, kb, kc = (np.asarray(m.net.layers[0].kernel[...]) for m in (a, b, c))
    np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(ka, kc)


def test_xavier_uniform_init_bounds():
    kernel = np.asarray(create_model('vgg11').net.layers[0].layers[0].kernel[...])  # 3×3, 3→64
    bound = np.sqrt(6 / (3 * 9 + 64 * 9))
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound


def test_float64_needs_x64_and_then_works():
    with pytest.raises(ValueError, match='jax_enable_x64'):
        create_model('lenet', dtype=jnp.float64)
    jax.config.update('jax_enable_x64', True)
    try:
        model = create_model('lenet', dtype=jnp.float64, image_size=28, in_channels=1)
        dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))}
        assert dtypes == {jnp.dtype('float64')}
        assert model(jnp.ones((2, 28, 28, 1))).dtype == jnp.float64
        model32 = create_model('lenet', image_size=28, in_channels=1)
        assert model32(jnp.ones((2, 28, 28, 1))).dtype == jnp.float32
    finally:
        jax.config.update('jax_enable_x64', False)


@pytest.mark.parametrize('name', [n for n in list_models() if not n.startswith('tv_')])
def test_train_step_changes_batchnorm_stats_only_in_train_mode(name):
    size = max(min_image_size(name), 16)
    model = create_model(name, image_size=size, num_classes=4)

    # graphdef is static (it holds the train/eval flags), so it must be part of the jit key.
    @partial(jax.jit, static_argnums=0)
    def run(graphdef, state, x):
        m = nnx.merge(graphdef, state)
        y = m(x)
        return y, nnx.state(m)

    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, size, size, 3)), jnp.float32)
    graphdef, state = nnx.split(model)
    hash(graphdef)  # jit keys on it: every model's static structure must be hashable
    y, new_state = run(graphdef, state, x)
    assert y.shape == (2, 4) and bool(jnp.isfinite(y).all())
    before = jax.tree.leaves(state.filter(nnx.BatchStat))
    after = jax.tree.leaves(new_state.filter(nnx.BatchStat))
    if before:
        assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    model.eval()
    graphdef, state = nnx.split(model)
    _, eval_state = run(graphdef, state, x)
    for a, b in zip(
        jax.tree.leaves(state.filter(nnx.BatchStat)),
        jax.tree.leaves(eval_state.filter(nnx.BatchStat)),
    ):
        np.testing.assert_array_equal(a, b)
