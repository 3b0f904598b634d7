"""Base class for stage parameters (pydantic). Kept tiny so every ``params.py`` imports fast."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError


class Params(BaseModel):
    """A config section. Unknown keys are errors. Fields declared with ``NoFP(...)`` do not change output
    (batch size, device, shard sizes) and are left out of the stage fingerprint."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # no NaN / inf anywhere

    def fingerprint_dict(self) -> dict[str, Any]:
        out = {}
        for name, f in type(self).model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if extra.get("fingerprint", True) is False:
                continue
            v = getattr(self, name)
            out[name] = v.fingerprint_dict() if isinstance(v, Params) else _plain(v)
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def NoFP(default: Any = ..., **kw: Any) -> Any:  # noqa: N802 - reads like Field
    """A field that does not affect the stage's output, so it is excluded from the fingerprint."""
    extra = dict(kw.pop("json_schema_extra", {}) or {})
    extra["fingerprint"] = False
    return Field(default, json_schema_extra=extra, **kw)



# settings several stages share (none changes a stage's output, so none is fingerprinted): one definition each


def ShardQueries(default: int = 10_000) -> Any:  # noqa: N802 - reads like Field
    """``shard_queries``: queries per output shard, the unit of resume."""
    return NoFP(default, gt=0, description="Queries per output shard (the unit of resume).")


def BatchSize(default: int = 64) -> Any:  # noqa: N802
    """``batch_size`` of a model's encode / predict calls."""
    return NoFP(default, gt=0, description="Encode / predict batch size.")


def Device() -> Any:  # noqa: N802
    """``device`` a model runs on."""
    return NoFP(None, description="cpu | cuda | cuda:N [auto: CUDA when present].")

def one_of(names: Iterable[str]) -> AfterValidator:
    """Validator of a field whose value names an entry of a registry (export formats, samplers, teachers, input
    readers): ``Annotated[str, one_of(FORMATS)]``. The registry is the one list of names; the error reads like
    pydantic's for a ``Literal``."""
    allowed = tuple(names)

    def check(v: str) -> str:
        if v not in allowed:
            quoted = [f"'{n}'" for n in allowed]
            expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v

    return AfterValidator(check)
