"""Parameters of the engine (config section ``engine``): where the heavy, embarrassingly parallel work runs.

The engine never changes a result, so nothing here is part of any fingerprint, and the section is not recorded in
the manifests (an artifact is the same whichever engine built it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from negmine.params_base import Params

ENGINES = ("local", "ray")


class EngineParams(Params):
    kind: Literal["local", "ray"] = Field("local", description="Where models run: local (this process) | ray "
                                          "(a pool of Ray actors on a Ray cluster; needs the [ray] extra).")
    address: str | None = Field(None, description="Ray cluster address (host:port or ray://host:port) [$RAY_ADDRESS, "
                                "else a local cluster].")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per Ray worker (one model per worker).")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per Ray worker [1 when the cluster has GPUs, "
                                   "else 0].")
    workers: int | None = Field(None, gt=0, description="Ray workers per model [as many as the cluster's "
                                "CPUs (or GPUs) allow].")
    batch_size: int = Field(256, gt=0, description="Rows per block of model work sent to a Ray worker (the dense "
                            "search keeps the local engine's blocks of 4096 queries).")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None or v == "" or v == "auto":
            return v or None
        host = v[len("ray://"):] if v.startswith("ray://") else v
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536 or "/" in name or " " in name:
            raise ValueError(f"'{v}' is not a Ray address (host:port, ray://host:port or auto)")
        return v
