"""Train a speechlab model: `python train.py model=... data=... trainer=...` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from speechlab.run.stops import stops_as_messages
from speechlab.run.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with stops_as_messages():  # a user-caused stop prints its message, not a traceback
        metrics = run(cfg)
    # The value a sweeper (Optuna, ...) optimises.
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
