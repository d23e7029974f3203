"""Train a speechlab model: `python train.py model=... data=... trainer=...` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from speechlab.run.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg)
    # The value a sweeper (Optuna, ...) optimises.
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
