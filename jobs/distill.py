"""Ray Job entrypoint.

ELEC: train an experiment's teacher and student jointly on Ray Train; export the student.

--config configs/experiments/NAME_elec.yaml [llmctr distill options]."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("distill"))
