"""jaxconv.data.augment: what crop and flip do to a known array, shapes, exact reproducibility
for a given (seed, step), and that the train step draws them from (seed, step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.data import preprocess
from jaxconv.data.augment import (
    AUGMENTATIONS,
    CROP_PADDING,
    augment,
    augment_key,
    random_crop,
    random_flip,
)


def ramp(n=64, h=6, w=5, c=2) -> np.ndarray:
    """n copies of one image whose every pixel is distinct and non-zero (so zero = padding)."""
    image = 1 + np.arange(h * w * c, dtype=np.float32).reshape(h, w, c)
    return np.broadcast_to(image, (n, h, w, c)).copy()


def windows(image: np.ndarray, padding: int = CROP_PADDING) -> list[np.ndarray]:
    """Every H x W window of the zero-padded image, offsets (0..2p) x (0..2p) in row order."""
    h, w, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    return [
        padded[dy : dy + h, dx : dx + w]
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
    ]


@pytest.mark.parametrize('mode', AUGMENTATIONS)
def test_shapes_and_dtype_are_kept(mode):
    x = jnp.asarray(ramp(8, 32, 32, 3))
    y = jax.jit(augment, static_argnums=2)(x, jax.random.key(0), mode)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_flip_mirrors_left_right_about_half_the_images():
    x = ramp()
    out = np.asarray(random_flip(jnp.asarray(x), jax.random.key(1)))
    mirrored = x[:, :, ::-1]
    flipped = [bool(np.array_equal(o, m)) for o, m in zip(out, mirrored)]
    assert all(f or np.array_equal(o, i) for f, o, i in zip(flipped, out, x))
    assert 16 <= sum(flipped) <= 48  # 64 fair coins


def test_flip_of_a_known_row():
    x = jnp.asarray([[[[1.0], [2.0], [3.0]]]] * 2)  # (2, 1, 3, 1)
    rows = {tuple(np.asarray(random_flip(x, jax.random.key(k)))[0, 0, :, 0]) for k in range(20)}
    assert rows == {(1.0, 2.0, 3.0), (3.0, 2.0, 1.0)}


def test_crop_is_a_window_of_the_zero_padded_image():
    x = ramp(200)
    out = np.asarray(random_crop(jnp.asarray(x), jax.random.key(2)))
    candidates = windows(x[0])
    offsets = set()
    for o in out:
        match = [k for k, win in enumerate(candidates) if np.array_equal(o, win)]
        assert match, 'a crop that is no window of the padded image'
        offsets.add(match[0])
    # 200 draws over 81 offsets: the corners and the centre are reachable, most offsets seen.
    assert len(offsets) > 60


def test_crop_flip_is_a_crop_then_maybe_a_mirror():
    x = ramp(32)
    out = np.asarray(augment(jnp.asarray(x), jax.random.key(3), 'crop-flip'))
    candidates = windows(x[0])
    for o in out:
        assert any(np.array_equal(o, w) or np.array_equal(o, w[:, ::-1]) for w in candidates)


def test_same_seed_and_step_same_draws_other_step_other_draws():
    x = jnp.asarray(ramp(16, 8, 8, 1))
    root = augment_key(0)
    draw = jax.jit(lambda k: augment(x, k, 'crop-flip'))
    a = np.asarray(draw(jax.random.fold_in(root, 7)))
    b = np.asarray(draw(jax.random.fold_in(augment_key(0), 7)))
    c = np.asarray(draw(jax.random.fold_in(root, 8)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.asarray(draw(jax.random.fold_in(augment_key(1), 7))))


def test_augment_key_differs_from_the_dropout_key():
    from jaxconv.training.steps import dropout_key

    assert not np.array_equal(
        jax.random.key_data(augment_key(0)), jax.random.key_data(dropout_key(0))
    )


def test_preprocess_augments_before_normalising_so_padding_is_black():
    x = np.full((64, 8, 8, 1), 255, np.uint8)
    out = np.asarray(
        preprocess(
            x, image_size=8, mean=(0.5,), std=(0.25,), augment='crop-flip', key=jax.random.key(4)
        )
    )
    assert set(np.unique(out)) <= {(0 - 0.5) / 0.25, (1 - 0.5) / 0.25}
    assert (out == -2.0).any()  # some crop reached into the padding
    plain = preprocess(x, image_size=8, mean=(0.5,), std=(0.25,))
    np.testing.assert_array_equal(
        np.asarray(preprocess(x, image_size=8, mean=(0.5,), std=(0.25,), augment='none')), plain
    )


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match='crop-flip'):
        augment(jnp.zeros((1, 4, 4, 1)), jax.random.key(0), 'rotate')


def test_train_step_augments_only_when_asked_and_reproducibly():
    """The same state and batch: 'none' and 'crop-flip' give different losses (the step does
    augment), two 'crop-flip' steps from the same state the same one (drawn from (seed, step))."""
    import optax

    from jaxconv.data import DATASETS
    from jaxconv.registry import create_model
    from jaxconv.training import steps
    from jaxconv.training.sharding import data_parallel

    spec = DATASETS['fashion_mnist']
    split = steps.split_model(
        create_model('mlp', num_classes=10, in_channels=1, image_size=28, rngs=steps.model_rngs(0))
    )
    tx = optax.sgd(0.1)
    dp = data_parallel(1)
    x = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    y = np.arange(8, dtype=np.int32)

    def losses(mode, times):
        step = steps.make_train_step(
            split,
            tx,
            spec=spec,
            image_size=28,
            seed=0,
            augment=mode,
            replicated=dp.replicated,
            batch=dp.batch,
        )
        out = []
        for _ in range(times):  # a fresh state each time: the step donates its input
            state = dp.replicate(steps.init_state(split, tx))
            _, metrics = step(state, dp.replicate(split.rngs), *dp.global_batch(x, y))
            out.append(float(metrics['loss']))
        return out

    first, again = losses('crop-flip', 2)
    assert first == again != losses('none', 1)[0]
