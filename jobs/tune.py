"""Ray Job entrypoint.

A Ray Tune search (ASHA over Ray Train trials); writes results, a PNG and the best experiment YAML.

--config configs/searches/NAME.yaml [llmctr tune options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("tune"))
