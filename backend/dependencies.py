"""FastAPI dependencies: the app's settings, upload store, upload rate limiter, asset version.

Everything lives on `app.state` (set by `create_app`), so tests can build
independent apps with their own settings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .assets import AssetVersion
from .ratelimit import RateLimiter
from .settings import Settings
from .storage import UploadStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> UploadStore:
    return request.app.state.store


def get_upload_limiter(request: Request) -> RateLimiter:
    return request.app.state.upload_limiter


def get_asset_version(request: Request) -> AssetVersion:
    return request.app.state.asset_version


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[UploadStore, Depends(get_store)]
UploadLimiterDep = Annotated[RateLimiter, Depends(get_upload_limiter)]
AssetVersionDep = Annotated[AssetVersion, Depends(get_asset_version)]
