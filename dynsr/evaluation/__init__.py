"""The evaluation protocol, as the papers measure: a library the commands only call.

* :class:`Degradation`, :func:`modcrop` (:mod:`.degradation`): how a test LR image is made
  from an HR image, and the benchmark crop.
* :func:`evaluate_images` (:mod:`.protocol`): PSNR-Y / SSIM-Y of a model on HR images (``dynsr
  eval``, training's validation), also on real pairs whose LR is on the HR grid
  (:func:`on_hr_grid`, :func:`default_crop`); :func:`blind_conditions`: a non-blind model's
  conditions read off each LR image (:mod:`dynsr.blind`).
* :func:`evaluate_zeroshot`, :class:`QualityCurve` (:mod:`.zeroshot`): zero-shot DualSR
  trained and scored per image.
* :func:`score_folders` (:mod:`.score`): existing SR results (from any tool) scored against
  their HR images, matched by name.

Data flows one way: io → degrade → model → metrics → evaluation.
"""

from dynsr.evaluation.degradation import RANDOM_KERNELS, Degradation, modcrop
from dynsr.evaluation.protocol import (
    GRID_PAIRS_CROP,
    Conditions,
    EvalResult,
    blind_conditions,
    default_crop,
    evaluate_images,
    find_lr,
    grid_pairs_settings,
    load_evaluated_model,
    load_pair,
    model_conditions,
    on_hr_grid,
    run_record,
    true_kernel,
)
from dynsr.evaluation.score import match_by_name, score_folders
from dynsr.evaluation.zeroshot import ABLATIONS, QualityCurve, evaluate_zeroshot

__all__ = [
    "ABLATIONS",
    "GRID_PAIRS_CROP",
    "RANDOM_KERNELS",
    "Conditions",
    "Degradation",
    "EvalResult",
    "QualityCurve",
    "blind_conditions",
    "default_crop",
    "evaluate_images",
    "evaluate_zeroshot",
    "find_lr",
    "grid_pairs_settings",
    "load_evaluated_model",
    "load_pair",
    "match_by_name",
    "model_conditions",
    "modcrop",
    "on_hr_grid",
    "run_record",
    "score_folders",
    "true_kernel",
]
