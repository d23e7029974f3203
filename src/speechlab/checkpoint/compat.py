"""Checkpoints written before the package layout change: their old module paths, mapped.

A checkpoint's recipe names the classes and functions it was built from by ``_target_``
(``speechlab.features.LogMelFrontend``, ``speechlab.data.corpora.fsdd.FSDDReader``, ...). Those
modules moved in speechlab 0.1's layout change (one folder per concern); :func:`upgrade_recipe`
rewrites every ``_target_`` whose module is in :data:`MOVED_MODULES` to the module's new path,
so such a checkpoint still restores, evaluates and resumes. Targets of modules that did not move
are left as they are.

Options added to a class after checkpoints of it were written are filled in with the value
those checkpoints were trained with (:data:`ADDED_OPTIONS`), never with today's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: old module -> new module, for every module the layout change moved.
MOVED_MODULES: dict[str, str] = {
    "speechlab.audio": "speechlab.audio.io",
    "speechlab.features": "speechlab.audio.features",
    "speechlab.text": "speechlab.text.tokenizers",
    "speechlab.data.normalize": "speechlab.text.normalize",
    "speechlab.data.espeak": "speechlab.text.espeak",
    "speechlab.data.corpora.base": "speechlab.data.reader",
    "speechlab.data.corpora.common_voice": "speechlab.corpora.common_voice",
    "speechlab.data.corpora.covost2": "speechlab.corpora.covost2",
    "speechlab.data.corpora.fsdd": "speechlab.corpora.fsdd",
    "speechlab.data.corpora.ljspeech": "speechlab.corpora.ljspeech",
    "speechlab.data.corpora.speech_commands": "speechlab.corpora.speech_commands",
    "speechlab.data.download": "speechlab.corpora.download",
    "speechlab.data.synth": "speechlab.corpora.embedded.mini_commands",
    "speechlab.data.mini_voice": "speechlab.corpora.embedded.mini_voice",
    "speechlab.data.mini_covost": "speechlab.corpora.embedded.mini_covost",
    "speechlab.data.mini_speaker": "speechlab.corpora.embedded.mini_speaker",
    "speechlab.metrics": "speechlab.tasks.synthesis_metrics",
    "speechlab.logging": "speechlab.tasks.artifacts",
    "speechlab.checkpointing": "speechlab.checkpoint.last",
    "speechlab.init_from": "speechlab.checkpoint.init_from",
    "speechlab.callbacks": "speechlab.run.callbacks",
    "speechlab.train": "speechlab.run.train",
    "speechlab.evaluate": "speechlab.run.evaluate",
    "speechlab.resume": "speechlab.run.resume",
    "speechlab.run_record": "speechlab.run.run_record",
    "speechlab.sweep_summary": "speechlab.run.sweep_summary",
    "speechlab.loggers": "speechlab.run.loggers",
    "speechlab.reports": "speechlab.run.reports",
    "speechlab.resolvers": "speechlab.run.resolvers",
}


#: class -> {option: the value every checkpoint written before the option existed used}.
ADDED_OPTIONS: dict[str, dict[str, Any]] = {
    # the auxiliary CTC loss of the transducer (2026-12-04); before it, none
    "speechlab.tasks.rnnt.RNNTTask": {"ctc_weight": 0.0},
    # padded frames zeroed after every layer, not only after pooling (2026-12-04); channels-last
    # activations (2026-12-05), off for old checkpoints so their float sums run in the old order
    "speechlab.nn.kws_cnn.KeywordCNN": {"mask_every_layer": False, "channels_last": False},
}


def upgrade_target(target: str) -> str:
    """``target`` (``module.name``) with its module's new path, if the module moved."""
    module, _, name = target.rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else target


def upgrade_recipe(value: Any) -> Any:
    """A copy of ``value`` (a recipe, or any part of one) with every ``_target_`` upgraded."""
    if isinstance(value, Mapping):
        upgraded = {
            key: upgrade_target(item)
            if key == "_target_" and isinstance(item, str)
            else upgrade_recipe(item)
            for key, item in value.items()
        }
        target = upgraded.get("_target_")
        if isinstance(target, str) and target in ADDED_OPTIONS:
            upgraded = {**ADDED_OPTIONS[target], **upgraded}
        return upgraded
    if isinstance(value, list):
        return [upgrade_recipe(item) for item in value]
    return value
