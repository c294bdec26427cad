"""Person segmentation: data, model, losses, metrics, the training loop, export and inference.

Importing the package imports every module with a gin configurable, so a config file can
name any of them (and re-parsing a run's operative_config.gin works).
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

from lib import data, losses, model, train  # noqa: E402,F401  (registers the configurables)
