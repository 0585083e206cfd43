"""Train a jaxconv model: ``python train.py --arch lenet`` (``--help`` lists every option).

Thin on purpose: parsing, defaults and the loop live in :mod:`jaxconv.training`, where they are
tested without a subprocess.
"""

import sys

from jaxconv.training.cli import main

if __name__ == '__main__':
    sys.exit(main())
