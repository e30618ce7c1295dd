"""Data: get or make a corpus, the clip manifest, its contract, speaker-independent splits, EDA, featurize.

The data side of the pipeline, one module per stage verb (`ingest`, `validate`, `featurize`, `eda`)
plus what they share (`labels`, `splits`, `augment`, `contract`, `coverage`, `download`, `synth`).
"""
