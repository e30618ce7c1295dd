"""ser: speech emotion recognition on short utterances (log-mel -> CNN-LSTM).

The package holds every stage's logic once; `dvc.yaml`, the Prefect flow and the
`ser` CLI are thin drivers over it. Run `ser --help` for the entry points.
"""

__version__ = "0.1.0"
