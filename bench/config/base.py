"""The base of every config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors; assignment is validated; inf and nan are refused in every float."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
