import os

# Tests run on CPU; keep XLA from grabbing every core's worth of threads twice over.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# Autotuned conv plans go to a cache of this test session, never to the user's cache.
import tempfile  # noqa: E402

os.environ.setdefault('JAXCONV_CACHE_DIR', tempfile.mkdtemp(prefix='jaxconv-test-cache-'))
