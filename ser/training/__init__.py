"""Training: the CNN-LSTM (`model`), its fit (`train`, `fit_loop`, `placement`), the statistics head
(`stats_head`) and the `evaluate` stage's scores and quality gates.
"""
