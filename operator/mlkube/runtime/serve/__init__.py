"""The model server behind ``mlkube serve``, in layers.

``app`` (HTTP transport) → ``dataplane`` (protocol, validation via ``decoding``, metrics,
sampled ``inferencelog``) → ``model`` (safe load, warm-up, predict). ``settings`` is read
once by ``command`` and passed down; ``errors`` carry their HTTP status.
"""
