"""Small JSON endpoints: health and labels."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from contract import LABELS
from contract.manifest import ManifestError, read_manifest_json

from ..dependencies import SettingsDep

router = APIRouter(prefix="/api", tags=["api"])


class Health(BaseModel):
    status: str = Field(description='Always "ok" when the server answers.')
    models: int = Field(
        description="Number of ensemble members in models/manifest.json (0 if none)."
    )


class Labels(BaseModel):
    labels: list[str] = Field(
        description="The seven classes, in FER2013 order (model output order)."
    )


@router.get("/health", response_model=Health, summary="Liveness and model count")
def health(settings: SettingsDep) -> Health:
    try:
        # Counted, not validated: a health probe must stay cheap and answer even when the
        # manifest is being replaced or is one an older exporter wrote.
        members = read_manifest_json(settings.models_dir).get("members")
        members = len(members) if isinstance(members, list) else 0
    except ManifestError:  # no manifest yet
        members = 0
    return Health(status="ok", models=members)


router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get("/labels", response_model=Labels, summary="The expression labels")
def labels() -> Labels:
    return Labels(labels=list(LABELS))
