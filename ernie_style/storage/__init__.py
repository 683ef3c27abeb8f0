"""Model and checkpoint directories on disk (Paddle-free, so ``export`` reads them without Paddle).

  model_dir.py   the files of a model directory: ``checksums.json`` written and verified
"""
