"""Ray Job entrypoint.

Encode a prepared dataset's field, feature and entity texts into semantic tables (Ray Data, cached).

--config configs/datasets/NAME.yaml [llmctr encode options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("encode"))
