"""Pretraining samples (Paddle-free; numpy).

  spec.py      ``SampleSpec`` (everything that decides a sample), ``data.split``, the blend list
  dataset.py   the sample layout: sentence spans from the sample index -> ``[CLS] A [SEP] B [SEP]`` with SOP
  masking.py   the maskers (``data.masking``; the ``MASKERS`` registry)
"""
