"""The ``train.py`` command line: argparse -> ``TrainConfig`` -> :func:`fit`, and exit codes.

Exit codes: 0 done; 2 usage error (argparse's, one line, nothing written: bad values, a workdir
holding another run, a resume with different settings, too few devices...); 1 a data error or a
diverged run (one sentence, no traceback); 128 + signal number after a graceful stop on SIGINT or
SIGTERM (a checkpoint of the last finished step was written: continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys

from jaxconv import cpu_runtime
from jaxconv.data import DATASET_NAMES, DataError
from jaxconv.data.augment import AUGMENTATIONS
from jaxconv.optim import OPTIMIZERS
from jaxconv.registry import list_models
from jaxconv.training.config import DTYPES, TrainConfig
from jaxconv.training.errors import ConfigError, NonFiniteLossError
from jaxconv.training.loop import FitResult, fit
from jaxconv.training.recipes import SCHEDULES, recipe_table


def _recipe_default(field: str) -> str:
    return f"default: the arch's recipe {field} (table below)"


def build_parser() -> argparse.ArgumentParser:
    archs = list_models()
    parser = argparse.ArgumentParser(
        prog='train.py',
        description='Train a classic CNN from jaxconv on an image classification dataset '
                    '(data-parallel over all local devices, checkpointed every epoch).',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='default recipe per arch (used for every option not given):\n'
               + recipe_table(archs)
               + '\n\noutputs in --workdir: metrics.jsonl (one line per epoch), summary.json, '
                 'curves.png, config.json, checkpoints/ (orbax)\n'
                 'several processes: start one per host with --coordinator-address, '
                 '--num-processes and --process-id (or --distributed on a cluster JAX detects)')
    add = parser.add_argument
    add('--arch', required=True, choices=archs, metavar='ARCH',
        help='architecture, one of: ' + ', '.join(archs))
    add('--dataset', default='fashion_mnist', choices=DATASET_NAMES,
        help="dataset (default: %(default)s); 'folder': your own images in --data-dir")
    add('--data-dir', metavar='DIR',
        help='directory with the official dataset files (checked against their registered '
             'checksums); default: a prepared tfds dataset, the OS package, or a download. '
             'For --dataset folder: DIR/train/CLASS/*.png|jpg|jpeg|bmp|webp and optionally '
             'DIR/test/CLASS/...')
    add('--channels', type=int, choices=(1, 3),
        help='--dataset folder: convert the images to 1 (grey) or 3 (RGB) channels (default: '
             'what most images have)')
    add('--val-fraction', type=float, default=0.1, metavar='F',
        help='--dataset folder without test/: hold out this share of train/ as the test split, '
             'chosen by --seed (default: %(default)s)')
    add('--augment', choices=AUGMENTATIONS,
        help="training augmentation: 'crop-flip' (random crop after 4-pixel zero padding, then "
             "horizontal flip), 'flip' or 'none' (default: crop-flip for cifar10/cifar2, "
             "else none)")
    add('--tfds-dir', metavar='DIR', help='where tfds prepares datasets (default: $TFDS_DATA_DIR '
                                          'or ~/tensorflow_datasets)')
    add('--image-size', type=int, metavar='N', help='input size N×N; ' + _recipe_default('size'))
    add('--batch-size', type=int, metavar='N',
        help='global batch size, divisible by the device count; ' + _recipe_default('batch'))
    add('--epochs', type=int, metavar='N', help=_recipe_default('epochs'))
    add('--optimizer', choices=OPTIMIZERS, help=_recipe_default('optimizer'))
    add('--lr', type=float, help='peak learning rate; ' + _recipe_default('lr'))
    add('--weight-decay', type=float, metavar='WD', help=_recipe_default('wd'))
    add('--momentum', type=float, default=0.9,
        help='momentum of the momentum/nesterov optimizers (default: %(default)s)')
    add('--schedule', choices=SCHEDULES, help='learning-rate schedule; '
                                              + _recipe_default('schedule'))
    add('--seed', type=int, default=0, help='parameter init, data order and dropout '
                                            '(default: %(default)s)')
    add('--dtype', choices=DTYPES, default='float32',
        help='parameters and computation (default: %(default)s); float64 is several times '
             'slower and serves exact comparisons, e.g. that N devices train like 1')
    add('--workdir', metavar='DIR', help='output directory (default: runs/ARCH-DATASET)')
    add('--resume', action='store_true', help='continue the run in --workdir from its latest '
                                              'checkpoint (same settings required)')
    add('--overwrite', action='store_true', help='delete the run already in --workdir and '
                                                 'start again')
    add('--limit-train', type=int, metavar='N', help='train on the first N training examples')
    add('--limit-eval', type=int, metavar='N', help='evaluate on the first N test examples')
    add('--devices', type=int, metavar='N', help='use the first N devices (default: all)')
    add('--keep-checkpoints', type=int, default=3, metavar='N',
        help='how many of the latest checkpoints to keep (default: %(default)s)')
    add('--no-progress', dest='progress', action='store_false', help='no progress bar')
    add('--coordinator-address', metavar='HOST:PORT',
        help='multi-process run: address of process 0')
    add('--num-processes', type=int, metavar='N', help='multi-process run: number of processes')
    add('--process-id', type=int, metavar='I', help='multi-process run: index of this process')
    add('--distributed', action='store_true',
        help="multi-process run with JAX's cluster autodetection (SLURM, Open MPI, Kubernetes)")
    add('--init-from', metavar='PATH',
        help='start from these weights instead of the initialiser: a torch state_dict (.pth/.pt, '
             'loaded with weights_only=True), a .safetensors file (no torch needed) or a jaxconv '
             'run directory; tv_* archs take torchvision\'s own state_dict. A head of another '
             'class count is re-initialised, a first conv of another input width adapted')
    add('--init-step', type=int, metavar='N',
        help='--init-from RUN_DIR: start from its checkpoint N (default: its latest)')
    add('--trainable', choices=('all', 'head'), default='all',
        help="what is trained (default: %(default)s); 'head': only the classifier, the rest in "
             'eval mode (BatchNorm keeps its running statistics)')
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{k: v for k, v in vars(args).items()
                          if k in TrainConfig.__dataclass_fields__})


def run(argv: list[str] | None = None) -> FitResult:
    """Parse ``argv`` and train; usage errors exit through argparse (code 2)."""
    parser = build_parser()
    config = config_from_args(parser.parse_args(argv))
    try:
        return fit(config)
    except ConfigError as e:
        parser.error(str(e))


def main(argv: list[str] | None = None) -> int:
    """``train.py``'s entry point: returns the process exit code (see the module docstring)."""
    cpu_runtime.configure()  # before JAX's backend starts
    try:
        result = run(argv)
    except DataError as e:
        print(f'train.py: data error: {e}', file=sys.stderr)
        return 1
    except NonFiniteLossError as e:
        print(f'train.py: {e}', file=sys.stderr)
        return 1
    if result.status == 'interrupted':
        return 128 + (result.signum or 0)
    return 0
