"""Prefect orchestration of the `ser` DVC pipeline.

`flows.retrain` holds the `retrain` flow (get data → validate → featurize → validate →
train → evaluate → gate → package); `flows.pipeline` reads `dvc.yaml` and drives DVC;
`flows.features` runs feature extraction on a Prefect task runner (threads, processes or
Dask); `flows.gate` decides whether the candidate model may replace the champion.

    python -m flows.retrain run -S train.epochs=5
"""
