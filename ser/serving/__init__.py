"""Serving: package the accepted model (`package`, `card`), run it (`predictor`), serve it over HTTP
(`service` with `uploads`, `batching`, `http`, `demo`), and use it from the command line
(`predict`, `crosscorpus`).
"""
