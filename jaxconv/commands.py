"""The ``jaxconv`` command: ``jaxconv train|evaluate|predict|export|parity ...``.

One name for the project's command lines, each still its own module (``python train.py``,
``python -m jaxconv.evaluate`` ... keep working). A subcommand is imported only when it runs,
so ``jaxconv predict`` does not pay for torch, and ``jaxconv parity`` (which needs torch) fails
alone where torch is missing.
"""

from __future__ import annotations

import importlib
import sys

#: subcommand -> (module with ``main(argv)``, one line of help)
COMMANDS = {
    'train': ('jaxconv.training.cli', 'train a model (train.py); --init-from starts from weights'),
    'evaluate': (
        'jaxconv.evaluate',
        "a run's checkpoint on a split: accuracy, per class, confusion matrix",
    ),
    'predict': ('jaxconv.predict', 'top-k classes of image files'),
    'export': ('jaxconv.export', "a run's weights as a torch state_dict (.pt / .safetensors)"),
    'parity': ('parity.__main__', 'a model against its torch twin, layer by layer (needs torch)'),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f'  {name:<{width}}  {text}' for name, (_, text) in COMMANDS.items()]
    return (
        'usage: jaxconv COMMAND [ARGS...]   (jaxconv COMMAND --help for its options)\n\n'
        'commands:\n' + '\n'.join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f'{usage()}\n\njaxconv: unknown command {name!r}', file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    prog = sys.argv[0]
    sys.argv[0] = f'jaxconv {name}'  # argparse's prog for the modules that take it from argv
    try:
        return module.main(rest)
    finally:
        sys.argv[0] = prog
