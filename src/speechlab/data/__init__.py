"""The data contract and pipeline: utterance, reader protocol, manifest, dataset, sampler,
collate, datamodule."""
