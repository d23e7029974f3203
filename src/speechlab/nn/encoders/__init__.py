"""Speech encoders: log-mel ``(B, n_mels, T)`` + lengths -> frames ``(B, T', output_dim)`` + lengths.

Every encoder takes ``input_dim`` (mel bands), exposes ``output_dim``, ``subsampling`` (nominal
time reduction) and ``output_lengths(lengths)``, and gives each utterance an output that does not
depend on the padding of its batch.
"""

from speechlab.nn.encoders.cnn import ConvEncoder
from speechlab.nn.encoders.conformer import ConformerEncoder
from speechlab.nn.encoders.conv_lstm import ConvLSTMEncoder
from speechlab.nn.encoders.dnn import DNNEncoder
from speechlab.nn.encoders.lstm import LSTMEncoder
from speechlab.nn.encoders.subsampling import Conv2dSubsampling, conv_output_lengths

__all__ = [
    "Conv2dSubsampling",
    "ConformerEncoder",
    "ConvEncoder",
    "ConvLSTMEncoder",
    "DNNEncoder",
    "LSTMEncoder",
    "conv_output_lengths",
]
