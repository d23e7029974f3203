"""OmegaConf resolvers the configs use; registered when speechlab's entry points import this."""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def wandb_offline() -> bool:
    """wandb runs offline unless an API key is present in the environment."""
    return not os.environ.get("WANDB_API_KEY")


def register() -> None:
    from speechlab.loggers import run_id

    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    # ${run_id:${paths.output_dir}}: one id per run dir, so a resumed run continues its tracker run
    OmegaConf.register_new_resolver("run_id", run_id, replace=True)


register()
