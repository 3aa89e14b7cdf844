"""The sha256 of every file of a policy folder, recorded once and checked at every load.

Whoever can write to the artifact store could otherwise swap a registered version's
`actor.pt` (code, see `rl_core.policy.actor_audit`), its MLmodel or its pyfunc wrapper. So the files
are hashed when the folder is saved, the digests travel as a tag of the LoggedModel and of
the registered version (`DIGESTS_TAG`, written by a trusted writer: the pipeline), and every
loader of a registered version compares the folder it downloaded with the digests it read
from the registry, never from the folder itself.

Every file of the folder is servable: each is read by some loader (MLmodel and
`artifacts/actor.pt` by the policy server, `pyfunc_policy.py` by `mlflow.pyfunc`, the
requirements and environment files by `mlflow models serve`, the input examples by MLflow's
input validation). So a file missing, changed or added is refused, except
`LOCAL_FILES`: those MLflow's client writes itself into what it downloads.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

DIGESTS_TAG = "rlops.sha256"
"""JSON object {path relative to the policy folder: sha256 hex} of every file of the folder,
on the LoggedModel (at its creation) and on every model version registered from it."""
LOCAL_FILES = frozenset({"registered_model_meta"})
"""Written by MLflow's client into a downloaded `models:/<name>/<version>` folder (the name and
version asked for): not part of the stored model, so not hashed or checked."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 2**20


class PolicyIntegrityError(ValueError):
    """A policy folder that is not, file for file, the one that was registered."""


class UnverifiedPolicyError(PolicyIntegrityError):
    """A registered policy that records no digests, so nothing proves its files are its own."""


def folder_digests(folder: str | Path) -> dict[str, str]:
    """{relative POSIX path: sha256} of every file under `folder`, sorted; a symlink or
    anything but a regular file is refused (a download never makes one)."""
    folder = Path(folder)
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise PolicyIntegrityError(f"{relative}: not a regular file (a policy holds files)")
        if path.is_file() and relative not in LOCAL_FILES:
            digests[relative] = _sha256(path)
    return digests


def encode_digests(digests: Mapping[str, str]) -> str:
    """The value of `DIGESTS_TAG`."""
    return json.dumps(dict(sorted(digests.items())), separators=(",", ":"))


def recorded_digests(tags: Mapping[str, str], what: str) -> dict[str, str]:
    """The digests `what` (a model version, a LoggedModel) records in its tags.

    A version without them was registered before digests were recorded: refused, saying how
    to get a version that has them.
    """
    raw = tags.get(DIGESTS_TAG)
    if raw is None:
        raise UnverifiedPolicyError(
            f"{what} records no file digests (tag {DIGESTS_TAG!r}): it predates digest checks, "
            "so nothing proves its files are the ones registered. Register the policy again "
            "through the pipeline (its export and register tasks record them) and serve that "
            "version"
        )
    try:
        digests = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PolicyIntegrityError(f"{what}: tag {DIGESTS_TAG!r} is not JSON ({exc})") from None
    ok = isinstance(digests, dict) and digests
    if not ok or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in digests.values()):
        raise PolicyIntegrityError(
            f"{what}: tag {DIGESTS_TAG!r} must be a JSON object of file path -> sha256 hex "
            f"digest, got {raw[:200]!r}"
        )
    return digests


def verify_folder(folder: str | Path, expected: Mapping[str, str], what: str) -> None:
    """Refuse `folder` unless its files are exactly `expected` (path -> sha256), naming the
    first file that differs and both digests."""
    actual = folder_digests(folder)
    for path, digest in sorted(expected.items()):
        if path not in actual:
            raise PolicyIntegrityError(f"{what}: {path} is missing (registered sha256 {digest})")
        if actual[path] != digest:
            raise PolicyIntegrityError(
                f"{what}: {path} has sha256 {actual[path]}, but sha256 {digest} was registered: "
                "the file was changed after registration"
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise PolicyIntegrityError(
            f"{what}: {extra[0]} (sha256 {actual[extra[0]]}) was not part of the registered "
            "policy: files were added after registration"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
