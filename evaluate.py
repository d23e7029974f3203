"""Evaluate a checkpoint: `python evaluate.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt`."""

import hydra
from omegaconf import DictConfig

from speechlab.run.evaluate import run
from speechlab.run.stops import stops_as_messages


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with stops_as_messages():  # a user-caused stop prints its message, not a traceback
        run(cfg)


if __name__ == "__main__":
    main()
