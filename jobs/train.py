"""Ray Job entrypoint.

Train an experiment on Ray Train.

--config configs/experiments/NAME.yaml [llmctr train options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("train"))
