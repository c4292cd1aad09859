"""The serving model base path: `<base>/<model name>/<integer version>/`.

This is TF Serving's layout; anything not named by an integer is ignored by
the server, which is what lets the Pusher write elsewhere and rename.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

# Where the Pusher records which pipeline model a version is. TF Serving reads
# only `tf_serving_warmup_requests` from assets.extra and ignores this file.
PROVENANCE_FILE = Path("assets.extra") / "suite_push.json"


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").exists())


def latest_version(model_dir: Path) -> Optional[tuple[int, Path]]:
    found = versions(model_dir)
    return (found[-1], model_dir / str(found[-1])) if found else None


def provenance(version_dir: Path) -> dict[str, Any]:
    path = version_dir / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.exists() else {}
