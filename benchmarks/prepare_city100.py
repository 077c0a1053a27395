"""Make the City100 data folder that the real-pair recipes and ``dynsr eval`` read.

City100 (Chen, Xiong, Tian, Zha, Wu: "Camera Lens Super-Resolution", CVPR 2019; MIT licence;
github.com/ngchc/CameraSR, folder ``City100/``) holds 100 scenes shot twice by each of two
cameras: ``NNNH.PNG`` at a long focal length (HR) and ``NNNL.PNG`` at a short one (LR), the LR
already registered and upsampled onto the HR pixel grid, so a pair has one size: 840×600 for
the iPhone X, 1218×870 for the Nikon D5500. This script copies the PNG files byte for byte
(nothing is decoded and written again) into the layout ``dynsr eval --hr DIR --lr DIR`` and
``data.train: {type: paired_realsr, hr: ..., lr: ...}`` take directly, one file name per pair::

    OUT/iphone/train/HR/NNN.png   OUT/iphone/train/LR/NNN.png    90 pairs: training
    OUT/iphone/val/HR/NNN.png     OUT/iphone/val/LR/NNN.png      10 pairs: checkpoint choice
    OUT/nikon/HR/NNN.png          OUT/nikon/LR/NNN.png           100 pairs: held-out camera
    OUT/MANIFEST.json             source commit, split rule, size and sha256 of every file
    OUT/LICENSE                   City100's MIT licence (it goes with every copy)

Split: the 10 validation scenes are the 10 numbers NNN whose BLAKE2b-64 digest of
``"city100-val:{seed}:{NNN}"`` is smallest (seed 0 by default); the rest train. The Nikon
pairs are never split: the protocol scores each final model on them once (docs/real_pairs.md).

Every file is checked before anything is written: 100 numbered pairs per camera, each
image a readable 8-bit RGB PNG of the camera's size, LR and HR of a pair the same size. The
folder is built beside OUT under a temporary name and renamed into place, so a failed run
leaves nothing half-written. If OUT exists, its files are checked against its manifest
instead (``--overwrite`` rebuilds it).

    python benchmarks/prepare_city100.py --source CameraSR          # a clone of the repository
    python benchmarks/prepare_city100.py --source CameraSR/.git     # or its git directory
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
#: Where the recipes (configs/*_real_cpu.yaml) look for the data: beside the repository.
DEFAULT_OUT = ROOT.parent / "data" / "City100"
SOURCE_URL = "https://github.com/ngchc/CameraSR"
CAMERAS = {"iphone": ("City100_iPhoneX", (840, 600)), "nikon": ("City100_NikonD5500", (1218, 870))}
PAIRS = 100
VAL_PAIRS = 10
_NAME = re.compile(r"^(\d{3})([HL])\.png$", re.IGNORECASE)


def fail(message: str) -> SystemExit:
    return SystemExit(f"prepare_city100: {message}")


class Source:
    """City100's files in a checkout (a folder holding ``City100/``) or in a git directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.git_dir: Path | None = None
        if (path / "City100").is_dir():
            self.commit = self._git(["-C", str(path), "rev-parse", "HEAD"], check=False)
            self._blobs: dict[str, str] = {}
        elif (path / "objects").is_dir() and (path / "HEAD").is_file():
            self.git_dir = path
            self.commit = self._git(["--git-dir", str(path), "rev-parse", "HEAD"])
            listing = self._git(["--git-dir", str(path), "ls-tree", "-r", "HEAD", "City100/"])
            # "<mode> blob <sha>\t<path>" per line
            self._blobs = {line.split("\t", 1)[1]: line.split()[2]
                           for line in listing.splitlines() if "\t" in line}
        else:
            raise fail(f"{path}: neither a CameraSR checkout (no City100 folder) nor a git "
                       "directory")

    @staticmethod
    def _git(argv: list[str], check: bool = True) -> str:
        result = subprocess.run(["git", *argv], capture_output=True, text=True, check=False)
        if result.returncode:
            if not check:
                return ""
            raise fail(f"git {' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def names(self, folder: str) -> list[str]:
        """File names in ``City100/folder``."""
        if self.git_dir is None:
            where = self.path / "City100" / folder
            if not where.is_dir():
                raise fail(f"{where}: missing")
            return sorted(p.name for p in where.iterdir() if p.is_file())
        prefix = f"City100/{folder}/"
        return sorted(p[len(prefix):] for p in self._blobs if p.startswith(prefix))

    def read(self, folder: str, name: str) -> tuple[bytes, str]:
        """The bytes of ``City100/folder/name`` and where they came from."""
        relative = f"City100/{folder}/{name}"
        if self.git_dir is None:
            return (self.path / relative).read_bytes(), relative
        blob = self._blobs[relative]
        data = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "blob", blob],
                              capture_output=True, check=False)
        if data.returncode:
            raise fail(f"{relative}: git cat-file failed: {data.stderr.decode().strip()}")
        return data.stdout, f"{relative} (blob {blob})"


def validation_scenes(seed: int, count: int = VAL_PAIRS) -> list[str]:
    """The ``count`` scene numbers with the smallest BLAKE2b-64 of "city100-val:SEED:NNN"."""
    def key(number: str) -> str:
        return hashlib.blake2b(f"city100-val:{seed}:{number}".encode(), digest_size=8).hexdigest()
    return sorted(sorted((f"{n:03d}" for n in range(1, PAIRS + 1)), key=key)[:count])


def _check_png(data: bytes, where: str, size: tuple[int, int]) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every row: a truncated file fails here
            mode, found = image.mode, image.size
            is_png = image.format == "PNG"
    except Exception as exc:  # Pillow raises many types on damaged files
        raise fail(f"{where}: not a readable image ({exc})") from None
    if not is_png or mode != "RGB":
        raise fail(f"{where}: expected an 8-bit RGB PNG, got mode {mode}")
    if found != size:
        raise fail(f"{where}: {found[0]}x{found[1]}, expected {size[0]}x{size[1]}")


def collect(source: Source) -> dict[str, dict[str, dict[str, tuple[bytes, str]]]]:
    """camera → scene number → {"HR": (bytes, origin), "LR": (bytes, origin)}, all checked."""
    cameras: dict[str, dict[str, dict[str, tuple[bytes, str]]]] = {}
    for camera, (folder, size) in CAMERAS.items():
        scenes: dict[str, dict[str, tuple[bytes, str]]] = {}
        for name in source.names(folder):
            match = _NAME.match(name)
            if match is None:
                continue
            number, kind = match.group(1), "HR" if match.group(2).upper() == "H" else "LR"
            data, origin = source.read(folder, name)
            _check_png(data, origin, size)
            scenes.setdefault(number, {})[kind] = (data, origin)
        expected = {f"{n:03d}" for n in range(1, PAIRS + 1)}
        missing = sorted(f"{n}{k[0]}" for n in expected for k in ("HR", "LR")
                         if k not in scenes.get(n, {}))
        if missing or set(scenes) != expected:
            extra = sorted(set(scenes) - expected)
            raise fail(f"City100/{folder}: expected pairs 001..{PAIRS:03d}; missing "
                       f"{', '.join(missing[:5]) or 'none'}, "
                       f"unexpected {', '.join(extra[:5]) or 'none'}")
        cameras[camera] = scenes
    return cameras


def layout(seed: int) -> dict[str, Callable[[str, str], str]]:
    """Where each camera's pair goes: a function of (scene number, HR|LR) → relative path."""
    val = set(validation_scenes(seed))

    def iphone(number: str, kind: str) -> str:
        return f"iphone/{'val' if number in val else 'train'}/{kind}/{number}.png"

    def nikon(number: str, kind: str) -> str:
        return f"nikon/{kind}/{number}.png"

    return {"iphone": iphone, "nikon": nikon}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(source: Source, out: Path, seed: int) -> dict:
    """Write the folder under a temporary name beside ``out``; returns it and its manifest."""
    cameras = collect(source)
    places = layout(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    files = []
    try:
        for camera, scenes in cameras.items():
            for number in sorted(scenes):
                for kind in ("HR", "LR"):
                    data, origin = scenes[number][kind]
                    relative = places[camera](number, kind)
                    target = staging / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    files.append({"path": relative, "sha256": hashlib.sha256(data).hexdigest(),
                                  "size": list(CAMERAS[camera][1]), "source": origin})
        _copy_licence(source, staging)
        val = validation_scenes(seed)
        manifest = {
            "dataset": "City100 (Chen et al., Camera Lens Super-Resolution, CVPR 2019)",
            "source": {"url": SOURCE_URL, "commit": source.commit or None, "licence": "MIT"},
            "made_by": "benchmarks/prepare_city100.py (dynsr); PNG bytes copied unchanged",
            "pairs": "LR (short focal length, NNNL.PNG) registered and upsampled onto the HR "
                     "grid (long focal length, NNNH.PNG): both of one size, same file name",
            "split": {
                "rule": f"iPhone X validation = the {VAL_PAIRS} scene numbers NNN with the "
                        f"smallest BLAKE2b-64 hex digest of 'city100-val:{{seed}}:{{NNN}}'; "
                        "the other 90 train; the Nikon D5500 pairs are the held-out camera",
                "seed": seed,
                "iphone_val": val,
                "iphone_train": [f"{n:03d}" for n in range(1, PAIRS + 1) if f"{n:03d}" not in val],
            },
            "files": files,
        }
        (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"staging": staging, "manifest": manifest}


def _copy_licence(source: Source, staging: Path) -> None:
    if source.git_dir is None:
        data = (source.path / "LICENSE").read_bytes()
    else:
        data = subprocess.run(["git", "--git-dir", str(source.git_dir), "show", "HEAD:LICENSE"],
                              capture_output=True, check=True).stdout
    (staging / "LICENSE").write_bytes(data)


def verify(out: Path) -> int:
    """Check an existing folder against its manifest; the number of files checked."""
    manifest_path = out / "MANIFEST.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as err:
        raise fail(f"{manifest_path}: not a City100 manifest ({err}); give --overwrite to "
                   "rebuild the folder") from None
    for entry in files:
        path = out / entry["path"]
        if not path.is_file():
            raise fail(f"{path}: missing; give --overwrite to rebuild the folder")
        if _sha256(path) != entry["sha256"]:
            raise fail(f"{path}: sha256 differs from {manifest_path.name}; give --overwrite to "
                       "rebuild the folder")
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True,
                        help=f"a clone of {SOURCE_URL} or its git directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"data folder to make (default {DEFAULT_OUT}, where the recipes "
                             "configs/*_real_cpu.yaml look)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing folder")
    args = parser.parse_args(argv)
    out = args.out.expanduser().absolute()
    if out == ROOT or ROOT in out.parents:
        raise fail(f"{out}: inside the repository; the data stays outside it (give --out)")
    if out.exists() and not args.overwrite:
        count = verify(out)
        print(f"{out}: exists, {count} files match its manifest (--overwrite rebuilds it)")
        return 0
    built = build(Source(args.source.expanduser()), out, args.seed)
    staging = built["staging"]
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)
    split = built["manifest"]["split"]
    print(f"wrote {out}: iPhone X {len(split['iphone_train'])} train + {len(split['iphone_val'])} "
          f"val pairs (val {' '.join(split['iphone_val'])}), Nikon D5500 100 held-out pairs; "
          f"sha256 of every file in {out / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
