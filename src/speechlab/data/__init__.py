"""The data contract and pipeline: utterance, utterance table, reader protocol, manifest, dataset,
sampler, collate, datamodule."""
