"""Looking at results: the HTML comparison report and training curves.

- :mod:`dynsr.report.compare`: run models on photos and write the report folder
  (``dynsr compare``).
- :mod:`dynsr.report.data`: what a report holds (pages, results, extra figures).
- :mod:`dynsr.report.site`: writing the folder: pages, index, assets (``assets/``).
- :mod:`dynsr.report.kernels`: UDVD's per-pixel kernels, sampled for the report.
- :mod:`dynsr.report.figure`: a crop comparison picture (PNG) of one page.
- :mod:`dynsr.report.curves`: a training run's curves (``dynsr plot``; needs matplotlib).

Nothing is imported here, so ``dynsr.report.curves`` (called at the end of training) does
not load the models.
"""
