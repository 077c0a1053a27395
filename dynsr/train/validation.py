"""A run's validation: ``data.val`` measured by the function ``dynsr eval`` uses
(:func:`dynsr.evaluation.evaluate_images`): PSNR-Y / SSIM-Y, SR rounded to 8 bit,
``crop = scale`` unless ``data.val.crop`` says otherwise."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dynsr.evaluation import Degradation, evaluate_images, model_conditions
from dynsr.io import list_images
from dynsr.train.config import ValConfig

__all__ = ["Validation"]


class Validation:
    """``data.val`` of a run: its degradation, its images (listed once) and their (LR, HR)
    pairs (made once, then kept: validation measures the same images many times)."""

    def __init__(self, val: ValConfig, model_name: str, scale: int) -> None:
        if val.realistic and (val.noise or val.blur is not None or val.kernel
                              or val.random_kernel or val.downsample != "bicubic"):
            raise ValueError("data.val.realistic draws its own blur, noise and downsampling: "
                             "leave out blur, kernel, random_kernel, noise and downsample")
        self.val = val
        self.degradation = Degradation(scale, val.blur, Path(val.kernel) if val.kernel else None,
                                       val.kernel_size, val.noise, val.downsample, val.seed,
                                       val.random_kernel, val.realistic)
        self.conditions = model_conditions(model_name, self.degradation)
        self.paths = list_images([Path(p) for p in val.hr], recursive=val.recursive)
        if not self.paths:
            raise ValueError(f"data.val.hr: no images found in {', '.join(val.hr)}")
        self.pairs: dict = {}

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The mean scores of ``model`` (put in eval mode for the measurement)."""
        val = self.val
        was_training = model.training
        model.eval()
        try:
            result = evaluate_images(
                model, self.paths, self.degradation,
                lr_dir=Path(val.lr) if val.lr else None, crop=val.crop,
                # As `dynsr eval`: channels_last goes with bf16.
                precision=val.precision, channels_last=val.precision == "bf16",
                conditions=self.conditions, pairs=self.pairs, desc="validation",
                label="dynsr train: validation")
        finally:
            model.train(was_training)
        return result.mean()
