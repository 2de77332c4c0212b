"""Ray Job entrypoint.

Train the early-exit LLM head of the scoring graph on Ray Train and calibrate its exit thresholds.

--config configs/llm_heads/NAME.yaml [llmctr llm-head train options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("llm-head", "train"))
