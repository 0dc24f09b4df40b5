"""Service settings, read from FV_* environment variables; each app gets its own instance."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told; defaults give the embedded single-host set-up."""

    model_config = SettingsConfigDict(env_prefix="FV_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    inference_threads: int = 0
    log_level: str = "info"
