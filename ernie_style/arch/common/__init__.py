"""What every encoder architecture of :mod:`ernie_style.arch` shares, so that an architecture's package holds only
what differs (BERT: absolute position embeddings; RoFormer: rotary positions in attention).

  config.py      Paddle-free: the activation names, the field checks every encoder config runs, ``from_dict``
  kernels.py     attention kernels (plain / sdpa / flash / auto) and the feed-forward activation, fused on GPU
  layers.py      the post-LN transformer layer with its position hook, encoder, pooler, MLM and SOP/NSP heads,
                 the weight init and the padding bias
  loading.py     a state dict checked by names and shapes before it is loaded
  persistence.py ``save_pretrained`` / ``from_pretrained`` of a model directory
  hf_config.py   Paddle-free: the transformers config.json mapping (activations, tied decoder, defaults)
  shapes.py      Paddle-free: the parameter shapes of the shared encoder layers (the architectures' expected_shapes)

Importing this package imports no Paddle (``config.py``, ``hf_config.py`` and ``shapes.py`` are read by ``export``).
"""
