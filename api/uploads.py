"""A submission's checks before its input is prepared: the model it names, the kind of
input that model takes, the upload's size. (What is wrong with an image itself is refused
by api.inputs.)"""

from fastapi import UploadFile, status

from api.errors import reject
from api.limits import too_big
from shared.registry import Manifest, Registry, UnknownModel


def resolve_model(registry: Registry, ref: str | None) -> Manifest:
    try:
        return registry.resolve(ref)
    except UnknownModel as exc:
        raise reject(status.HTTP_404_NOT_FOUND, "unknown_model", str(exc)) from exc


def takes(manifest: Manifest, kind: str) -> None:
    """415 when the model takes the other kind of input, saying how to send it."""
    if manifest.input.kind == kind:
        return
    if manifest.input.kind == "features":
        names = manifest.input.names or []
        raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "wrong_input_kind",
                     f"model {manifest.key} takes features, not an image: send a JSON body (application/json) "
                     f"with `model` and either `features` ({len(names)} numbers: {', '.join(names)}) or `inputs` "
                     "(each by name)")
    raise reject(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "wrong_input_kind",
                 f"model {manifest.key} takes an image, not features: send it as multipart/form-data "
                 "with the image in a `file` part")


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise reject(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", too_big(max_bytes))
    if not data:
        raise reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty", "the uploaded file is empty")
    return data
