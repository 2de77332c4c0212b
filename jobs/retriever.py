"""Ray Job entrypoint.

Train a LightGCN retriever on Ray Train.

--config configs/retrievers/NAME.yaml [llmctr retriever train options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("retriever", "train"))
