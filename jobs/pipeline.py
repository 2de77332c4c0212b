"""Ray Job entrypoint.

prepare → train → deploy one experiment.

--config configs/experiments/NAME.yaml [llmctr pipeline options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("pipeline"))
