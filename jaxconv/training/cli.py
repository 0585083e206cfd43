"""The ``train.py`` command line: argparse -> ``TrainConfig`` -> :func:`fit`, and exit codes.

Exit codes: 0 done; 2 usage error (argparse's, one line, nothing written: bad values, a workdir
holding another run, a resume with different settings, too few devices...); 1 a data error or a
diverged run (one sentence, no traceback); 128 + signal number after a graceful stop on SIGINT or
SIGTERM (a checkpoint of the last finished step was written: continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from jaxconv import cpu_runtime
from jaxconv.data import DataError
from jaxconv.registry import list_models
from jaxconv.training.config import TrainConfig, choices_of, flag_of
from jaxconv.training.errors import ConfigError, NonFiniteLossError
from jaxconv.training.loop import FitResult, fit
from jaxconv.training.recipes import recipe_table


def _recipe_default(column: str) -> str:
    return f"default: the arch's recipe {column} (table below)"


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per ``TrainConfig`` field that has help, in field order: flag, type, default,
    choices, metavar and help all come from the field (``config.option``)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if 'help' not in f.metadata:
            continue  # not an option (set by fit)
        meta, kw = f.metadata, {'dest': f.name}
        help_text = meta['help']
        if meta['recipe']:
            help_text = '; '.join(filter(None, [help_text, _recipe_default(meta['recipe'])]))
        choices = choices_of(f)
        kw['help'] = help_text.replace('{choices}', ', '.join(map(str, choices or ())))
        value_type = next(
            t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None)
        )  # int for ``int | None``
        if value_type is bool:
            kw['action'] = 'store_false' if f.default else 'store_true'
        else:
            if value_type is not str:
                kw['type'] = value_type
            if f.default is dataclasses.MISSING:
                kw['required'] = True
            elif f.default is not None:
                kw['default'] = f.default
            kw.update(
                {
                    k: v
                    for k, v in (('choices', choices), ('metavar', meta['metavar']))
                    if v is not None
                }
            )
        parser.add_argument(flag_of(f), **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='train.py',
        description='Train a classic CNN from jaxconv on an image classification dataset '
        '(data-parallel over all local devices, checkpointed every epoch).',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='default recipe per arch (used for every option not given):\n'
        + recipe_table(list_models())
        + '\n\noutputs in --workdir: metrics.jsonl (one line per epoch), summary.json, '
        'curves.png, config.json, checkpoints/ (orbax)\n'
        'several processes: start one per host with --coordinator-address, '
        '--num-processes and --process-id (or --distributed on a cluster JAX detects)',
    )
    add_config_options(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        **{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    )


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
