"""Ray Job entrypoint.

Preprocess a dataset on Ray Data.

--config configs/datasets/NAME.yaml [llmctr data prepare options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("data", "prepare"))
