"""``python -m jaxconv COMMAND ...``: the ``jaxconv`` command without the console script."""

import sys

from jaxconv.commands import main

if __name__ == '__main__':
    sys.exit(main())
