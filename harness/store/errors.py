"""What the store raises and warns, and the one message for a store that cannot be written."""

from __future__ import annotations

from harness.store.keys import is_url

__all__ = ["StoreError", "StoreNotWritableError", "StoreWarning", "not_writable_message"]


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad kind, builder misbehaved)."""


class StoreNotWritableError(PermissionError):
    """The store folder cannot be created or written."""


class StoreWarning(UserWarning):
    """A corrupt or partial artifact was found and is being rebuilt."""


def not_writable_message(location: str, problem: str) -> str:
    """Why the store at ``location`` (a folder or URL) cannot be written, and how to fix it.

    For a folder, ``problem`` is the phrase of :func:`harness.files.writable_dir_problem`
    (``"is not writable (...): Permission denied"``); for a URL, the backend's error text.
    """
    if is_url(location):
        return (
            f"the artifact store {location} cannot be written ({problem}); check the URL, "
            "that its bucket exists and the credentials (e.g. AWS_ACCESS_KEY_ID, "
            "AWS_ENDPOINT_URL), or pass a writable folder"
        )
    return (
        f"the artifact store folder {location} {problem}; set the "
        "HARNESS_STORE environment variable to a writable folder, e.g. "
        "HARNESS_STORE=$HOME/.cache/clusterability-store, or pass --store DIR"
    )
