"""The serving model base path: `<base>/<model name>/<integer version>/`.

This is TF Serving's layout; anything not named by an integer is ignored by
the server, which is what lets the Pusher write elsewhere and rename. The
base path may be local or on any Beam filesystem (TF Serving reads a
`gs://` one itself).
"""

from __future__ import annotations

from typing import Any, Optional

from tfx_pipeline import storage

# Where the Pusher records which pipeline model a version is. TF Serving reads
# only `tf_serving_warmup_requests` from assets.extra and ignores this file.
PROVENANCE_FILE = "assets.extra/suite_push.json"
SAVED_MODEL_FILE = "saved_model.pb"


def versions(model_dir: str) -> list[int]:
    """The complete versions (those with a `saved_model.pb`), ascending."""
    found = storage.glob(storage.join(model_dir, "*", SAVED_MODEL_FILE))
    names = (storage.relative(uri, model_dir).split("/")[0] for uri in found)
    return sorted(int(name) for name in names if name.isdigit())


def latest_version(model_dir: str) -> Optional[tuple[int, str]]:
    found = versions(model_dir)
    return (found[-1], storage.join(model_dir, str(found[-1]))) if found else None


def provenance(version_dir: str) -> dict[str, Any]:
    uri = storage.join(version_dir, PROVENANCE_FILE)
    return storage.read_json(uri) if storage.exists(uri) else {}


def version_identity(version_dir: str) -> str:
    """What a version is: the pipeline model it came from, else when its graph was written."""
    return provenance(version_dir).get("model_fingerprint") or str(
        storage.last_updated(storage.join(version_dir, SAVED_MODEL_FILE)))
