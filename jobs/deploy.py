"""Ray Job entrypoint. Deploy the latest model of an experiment on Ray Serve and return:
--config configs/experiments/NAME.yaml [llmctr serve options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("serve", "--no-block", "--experiment"))
