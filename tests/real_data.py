"""Where the tests find the real dataset files (Fashion-MNIST, MNIST: the official .gz files).

``$JAXCONV_TEST_DATASETS``: a directory with ``fashion-mnist/`` and ``mnist/`` sub-folders. Unset,
the development setup's ``shared/datasets`` next to the repository. Tests that need files found
in neither place skip, naming the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The environment variable that points the tests at the real dataset files.
ENV_VAR = 'JAXCONV_TEST_DATASETS'

DATASETS_DIR = Path(os.environ.get(ENV_VAR) or REPO.parent / 'shared' / 'datasets')
