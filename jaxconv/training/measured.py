"""Measured test accuracy of the default recipes, read from the results file, never typed in.

``benchmarks/accuracy.py`` runs the default recipes on the real Fashion-MNIST files and writes
``accuracy_results.json`` beside this module (shipped with the package, so an installed
``train.py --help`` shows it too). A row counts as the measure of a recipe only while the run it
came from used that recipe: change a recipe and its ``measured`` cell goes back to '-' until it
is run again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

RESULTS_FILE = Path(__file__).with_name('accuracy_results.json')

#: The dataset the recipes are tuned and measured on.
RECIPE_DATASET = 'fashion_mnist'

#: The settings of a run that must equal the recipe's for its accuracy to measure the recipe.
DEFAULT_RUN = {
    'dataset': RECIPE_DATASET,
    'seed': 0,
    'limit_train': None,
    'limit_eval': None,
    'dtype': 'float32',
    'init_from': None,
    'trainable': 'all',
}


def load_results(path: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """The results file's rows by arch ({} when there is no file yet)."""
    path = Path(path) if path is not None else RESULTS_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())['runs']


def recipe_settings(recipe) -> dict[str, Any]:
    """A recipe's settings as a run's config names them."""
    return dataclasses.asdict(recipe)


def measures_recipe(row: dict[str, Any], recipe) -> bool:
    """True when ``row``'s run was a complete default run of ``recipe``."""
    from jaxconv.training.config import LEGACY_VALUES  # config imports the recipes, which import us

    config = {**LEGACY_VALUES, **row['config']}  # a run from before a setting existed
    wanted = {**DEFAULT_RUN, **recipe_settings(recipe)}
    return all(config.get(k) == v for k, v in wanted.items()) and row['epochs'] == recipe.epochs


def measured_accuracy(
    arch: str, recipe, results: dict[str, dict[str, Any]] | None = None
) -> float | None:
    """Final test accuracy of ``arch``'s default run, if the results file holds one of
    ``recipe``."""
    results = load_results() if results is None else results
    row = results.get(arch)
    if row is None or not measures_recipe(row, recipe):
        return None
    return row['final_test_accuracy']
