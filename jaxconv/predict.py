"""``python -m jaxconv.predict RUN_DIR IMAGE... [--top-k 5] [--json]``: classify image files.

Each image goes the way the run's training images went: PIL decodes it, it is converted to the
run's channel count (grey 'L' or 'RGB') and resized to the dataset's stored size (a 28×28
Fashion-MNIST PNG is left as it is), then ``jaxconv.data.preprocess`` pads or resizes it to the
run's image size and normalises it with the dataset's mean and std, inside jit, as the eval step
does. An image that cannot be read is reported in one line naming it; the others are still
predicted, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxconv.data import DataError, DatasetSpec, preprocess
from jaxconv.data.folder import decode
from jaxconv.runs import LoadedRun, RunError, load_run

PROG = 'jaxconv predict'


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Top-k classes of image files under a run's checkpoint."
    )
    add = parser.add_argument
    add('run_dir', metavar='RUN_DIR', help='the run (a train.py --workdir)')
    add('images', nargs='+', metavar='IMAGE', help='image files (any format PIL reads)')
    add('--top-k', type=int, default=5, metavar='K', help='classes per image (default: 5)')
    add('--step', type=int, metavar='N', help='checkpoint step (default: the latest)')
    add('--json', action='store_true', help='one JSON object on stdout instead of text')
    return parser


def read_image(path: str | Path, spec: DatasetSpec) -> np.ndarray:
    """``path`` as uint8 (H, W, C) in the dataset's stored shape; ``DataError`` naming the file
    if PIL cannot read it. Square shapes go through the folder datasets' own decoder, so an
    image of a ``--dataset folder`` run is converted and resized as its training images were."""
    from PIL import Image

    height, width, channels = spec.image_shape
    if height == width:
        return decode([Path(path)], image_size=height, channels=channels)[0]
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f'cannot read the image {path} ({type(e).__name__}: {e})') from None
    with image:
        image = image.convert('L' if channels == 1 else 'RGB')
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        array = np.asarray(image, np.uint8)
    return array.reshape(height, width, channels)


def make_predict_fn(run: LoadedRun):
    """``probabilities(x_uint8 (N, H, W, C)) -> (N, num_classes)``, jitted, in eval mode."""
    run.model.eval()
    graph, state = nnx.split(run.model)
    spec, size = run.spec, run.config.image_size

    @jax.jit
    def probabilities(state, x):
        model = nnx.merge(graph, state)
        logits = model(preprocess(x, image_size=size, mean=spec.mean, std=spec.std))
        return jax.nn.softmax(logits.astype(np.float32), axis=-1)

    return lambda x: np.asarray(probabilities(state, x))


def predict(run: LoadedRun, paths: list[str], top_k: int = 5):
    """``(results, errors)``: per readable image its top-k ``(class, probability)`` pairs;
    per unreadable one a sentence naming it."""
    images, results, errors = {}, {}, {}
    for path in paths:
        try:
            images[path] = read_image(path, run.spec)
        except DataError as e:  # missing, not an image, truncated
            errors[path] = str(e)
    if images:
        probs = make_predict_fn(run)(np.stack(list(images.values())))
        k = min(top_k, run.spec.num_classes)
        for path, p in zip(images, probs):
            order = np.argsort(-p, kind='stable')[:k]
            results[path] = [(run.spec.class_names[i], float(p[i])) for i in order]
    return results, errors


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f'--top-k must be a positive integer, got {args.top_k}')
    try:
        run = load_run(args.run_dir, args.step)
    except RunError as e:
        print(f'{prog}: {e}', file=sys.stderr)
        return 1
    results, errors = predict(run, args.images, args.top_k)
    for reason in errors.values():
        print(f'{prog}: {reason}', file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    'run_dir': str(run.path),
                    'step': run.step,
                    'predictions': [
                        {'image': path, 'top_k': [{'class': c, 'probability': p} for c, p in top]}
                        for path, top in results.items()
                    ],
                    'errors': errors,
                }
            )
        )
    else:
        for path, top in results.items():
            print(f'{path}: ' + ', '.join(f'{c} {p:.4f}' for c, p in top))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(prog='python -m jaxconv.predict'))
