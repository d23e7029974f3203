"""Every config in the tree composes, resolves and instantiates."""

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from speechlab.checkpoint.recipe import build_task
from speechlab.run.config_check import check_config
from speechlab.run.train import instantiate_group
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import CONF, composed


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def job_config(cfg):
    """The job part of a composed config (the ``hydra`` node is read-only), resolved."""
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    OmegaConf.resolve(job)
    return job


def required_keys(cfg) -> list[str]:
    """The keys a recipe leaves to the user: ``???`` and ``${required:...}``."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, str) and (node == "???" or node.startswith("${required:")):
            found.append(path)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return found


def build_all(cfg) -> None:
    cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    for key in required_keys(cfg):  # values a recipe leaves to the user (a checkpoint)
        OmegaConf.update(cfg, key, "given.ckpt")
    OmegaConf.resolve(cfg)
    check_config(cfg)  # every shipped config passes the check a run makes before any data
    task_class = hydra.utils.get_class(cfg.model._target_)
    source = {"source_field": task_class.source_field} if task_class.source_field else {}
    datamodule = hydra.utils.instantiate(cfg.data, target_field=task_class.target_field, **source)
    assert isinstance(datamodule, L.LightningDataModule)
    if task_class.target_field == "label":
        inputs = {"labels": ["yes", "no", "_unknown_"]}
    else:
        inputs = {"tokenizer": CharTokenizer.train(["yes no up down"]).state()}
        if task_class.source_field:
            inputs["source_tokenizer"] = CharTokenizer.train(["oui non"]).state()
    task = build_task(cfg.model, inputs)
    assert isinstance(task, task_class)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return  # a GPU recipe (experiment=ctc_librispeech): its Trainer needs the GPU
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert isinstance(trainer, L.Trainer)


GROUPS = ["data", "model", "callbacks", "logger", "experiment", "debug"]
CASES = [(group, option) for group in GROUPS for option in options(group)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_config_composes_and_instantiates(group: str, option: str, tmp_path: Path):
    with composed("train", [f"{group}={option}"], tmp_path) as cfg:
        build_all(cfg)


# The model subgroups that pick a network, the override that swaps one in and a model it goes in.
SWAPS = {
    "model/encoder": ("model/encoder", ["model=ctc"]),
    "model/kws_encoder": (
        "model/kws_encoder@model.encoder",
        ["model=kws_cnn", "data=mini_commands"],
    ),
}
SWAP_CASES = [(group, option) for group in SWAPS for option in options(group)]


@pytest.mark.parametrize(("group", "option"), SWAP_CASES, ids=[f"{g}={o}" for g, o in SWAP_CASES])
def test_every_encoder_config_composes_and_instantiates_in_its_model(
    group: str, option: str, tmp_path: Path
):
    override, host = SWAPS[group]
    with composed("train", [*host, f"{override}={option}"], tmp_path) as cfg:
        expected = OmegaConf.load(CONF / group / f"{option}.yaml")._target_
        assert cfg.model.encoder._target_ == expected
        build_all(cfg)


@pytest.mark.parametrize("model", options("model"))
def test_debug_overfit_fits_every_model(model: str, tmp_path: Path):
    # the one debug preset that sets a model key (model.augment=null): every task must take it
    with composed("train", [f"model={model}", "debug=overfit"], tmp_path) as cfg:
        check_config(job_config(cfg))


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_config_composes(option: str, tmp_path: Path):
    # gpu/ddp trainers need a GPU to instantiate; everywhere they must compose and resolve.
    with composed("train", [f"trainer={option}"], tmp_path) as cfg:
        cfg = job_config(cfg)
        assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
        assert cfg.trainer.use_distributed_sampler is False
        if option in ("cpu", "default", "ddp_cpu"):
            build_all(cfg)


@pytest.mark.parametrize("option", ["ddp", "ddp_cpu"])
def test_ddp_trainers_keep_gradients_in_the_communication_buckets(option: str, tmp_path: Path):
    with composed("train", [f"trainer={option}"], tmp_path) as cfg:
        strategy = hydra.utils.instantiate(job_config(cfg).trainer.strategy)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs == {"gradient_as_bucket_view": True}


@pytest.mark.parametrize("option", options("hparams_search"))
def test_every_sweep_config_composes(option: str, tmp_path: Path):
    with composed("train", [f"hparams_search={option}"], tmp_path) as cfg:
        assert cfg.hydra.sweeper.params
        build_all(cfg)


def test_evaluate_config_composes(tmp_path: Path):
    with composed("evaluate", ["ckpt_path=some.ckpt"], tmp_path) as cfg:
        cfg = job_config(cfg)
        assert cfg.task_name == "evaluate"
        assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), L.Trainer)


def test_wandb_is_offline_without_a_key(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with composed("train", ["logger=wandb"], tmp_path) as cfg:
        assert cfg.logger.wandb.offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with composed("train", ["logger=wandb"], tmp_path) as cfg:
        assert cfg.logger.wandb.offline is False


@pytest.mark.parametrize("option", options("launcher"))
def test_every_launcher_config_composes(option: str, tmp_path: Path):
    with composed("train", [f"launcher={option}"], tmp_path) as cfg:
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        assert launcher["_target_"].startswith("hydra_plugins.")
        if option == "submitit_slurm":
            assert launcher["signal_delay_s"] == 90
            assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == cfg.trainer.devices
        build_all(cfg)


@pytest.mark.parametrize("option", ["kws_optuna", "ctc_optuna"])
def test_optuna_searches_follow_the_tasks_monitor_mode(option: str, tmp_path: Path):
    with composed("train", [f"hparams_search={option}"], tmp_path) as cfg:
        sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        expected = {"max": "maximize", "min": "minimize"}[cfg.model.monitor_mode]
        assert sweeper["direction"] == expected
        assert sweeper["sampler"]["_target_"] == "optuna.samplers.TPESampler"
        assert cfg.optimized_metric == f"{cfg.model.monitor}_best"


def test_sweep_and_run_dirs_resolve_under_the_launch_dir_before_any_job(tmp_path, monkeypatch):
    """A multirun's sweeper and callbacks read ``hydra.sweep.dir`` before Hydra's runtime config
    exists: with the default paths it must resolve, under ``logs/`` of the directory run from."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # as in a launching process: no job has run yet
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", ["model=kws_cnn"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    sweep = Path(cfg.hydra.sweep.dir)
    assert sweep.parent == tmp_path / "logs" / "train" / "multiruns"
    assert Path(cfg.hydra.run.dir).parent == tmp_path / "logs" / "train" / "runs"
    assert Path(cfg.paths.data_dir) == tmp_path / "data"


def test_a_multirun_job_is_named_by_its_overrides_and_grouped_by_its_sweep(tmp_path: Path):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    sweep = tmp_path / "logs" / "train" / "multiruns" / "2026-01-01_00-00-00"
    overrides = ["model=kws_cnn", "data=mini_commands", "logger=many", "model.optimizer.lr=0.003"]
    with composed("train", overrides, tmp_path) as cfg:
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.mode = "MULTIRUN"
            cfg.hydra.sweep.dir = str(sweep)
        HydraConfig().set_config(cfg)
        loggers = job_config(cfg).logger
    name = "kws_cnn-mini_commands-model.optimizer.lr=0.003"
    assert loggers.wandb.name == loggers.mlflow.run_name == loggers.tensorboard.version == name
    assert loggers.wandb.group == loggers.mlflow.tags.sweep == "train/multiruns/2026-01-01_00-00-00"
    assert loggers.mlflow.experiment_name == "train/kws"
    assert dict(loggers.mlflow.tags) == {
        "dev": "true",
        "model": "kws_cnn",
        "data": "mini_commands",
        "sweep": "train/multiruns/2026-01-01_00-00-00",
    }
