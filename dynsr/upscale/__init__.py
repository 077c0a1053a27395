"""The upscaling engine behind ``dynsr upscale`` and :func:`dynsr.load`.

- :mod:`dynsr.upscale.tiling`: tiled inference with blended seams and out-of-memory retry.
- :mod:`dynsr.upscale.manifest`: which weights ship (the manifest, read without torch).
- :mod:`dynsr.upscale.weights`: loading weights with their sha256 check, and publishing them.
- :mod:`dynsr.api`: the :class:`~dynsr.api.Upscaler` object (alpha, grayscale, bit depth,
  devices and precision) built on them.

Nothing is imported here, so that reading the manifest does not load torch.
"""
