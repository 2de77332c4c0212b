"""Ray Job entrypoint.

prepare → (encode) → train → (--retriever NAME → --llm-head NAME) → deploy one experiment.

--config configs/experiments/NAME.yaml [llmctr pipeline options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("pipeline"))
