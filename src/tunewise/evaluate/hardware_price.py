"""The hourly price of the machine that ran the local arms, so that no local arm silently costs $0.

`cost.hardware_usd_per_hour` wins when the user sets it. Otherwise the price comes from a dated table
(`tunewise/catalog/hardware_prices.yaml`, or the user's copy named by `cost.hardware_price_table`), chosen by the
hardware detected here: the CUDA GPU's name when torch is loaded and sees one, else the logical CPU count. The
row and its date travel with the price, so the report can say where a dollar figure came from.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tunewise.settings import CostConfig

SHIPPED = "tunewise/catalog/hardware_prices.yaml (shipped)"


class PriceTableError(ValueError):
    """The price table cannot be read or lacks a row; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class HourlyPrice:
    """An hourly price and where it came from (`row` and `as_of` are empty when the user set the price)."""

    usd_per_hour: float
    source: str  # "cost.hardware_usd_per_hour" or the table's file
    hardware: str  # what was detected, e.g. "2 CPU cores" or "NVIDIA H200"
    row: str = ""
    as_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if not self.row:
            return f"${self.usd_per_hour:,.3g}/hour, set in {self.source}"
        return (f"${self.usd_per_hour:,.3g}/hour for {self.hardware}: row '{self.row}' of {self.source}, "
                f"as of {self.as_of} (set cost.hardware_usd_per_hour to use your own price)")


def detected_gpu() -> str | None:
    """The first CUDA GPU's name, only when torch is already loaded (pricing never imports torch itself)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # a broken driver must not break the cost table
        return None
    return None


def cpu_count() -> int:
    """Logical CPUs this process may use (a container's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_hourly(cost: CostConfig) -> HourlyPrice:
    """The user's price when given, else the table's row for the detected hardware."""
    if cost.hardware_usd_per_hour is not None:
        return HourlyPrice(cost.hardware_usd_per_hour, "cost.hardware_usd_per_hour", "as configured")
    table, source = _table(cost.hardware_price_table)
    return price_from_table(table, source, detected_gpu(), cpu_count())


def price_from_table(table: dict[str, Any], source: str, gpu: str | None, cpus: int) -> HourlyPrice:
    """Pick the row: the first GPU row whose `match` is in the GPU's name, else the CPU row x the CPU count."""
    try:
        if gpu is not None:
            for row in table["gpu"]:
                if str(row["match"]).lower() in gpu.lower():
                    return HourlyPrice(float(row["usd_per_hour"]), source, gpu, str(row["name"]), str(row["as_of"]))
        row = table["cpu"][0]
        return HourlyPrice(round(float(row["usd_per_vcpu_hour"]) * cpus, 6), source, f"{cpus} CPU core(s)",
                           str(row["name"]), str(row["as_of"]))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PriceTableError(f"{source}: the price table lacks a usable row ({type(exc).__name__}: {exc}). Fix: "
                              "copy the shipped tunewise/catalog/hardware_prices.yaml and keep its fields "
                              "(cpu: name, usd_per_vcpu_hour, as_of; gpu: name, match, usd_per_hour, as_of).") from None


@lru_cache(maxsize=8)
def _table(path: str | None) -> tuple[dict[str, Any], str]:
    if path is None:
        text = files("tunewise.catalog").joinpath("hardware_prices.yaml").read_text(encoding="utf-8")
        return yaml.safe_load(text), SHIPPED
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PriceTableError(f"{path}: cannot read cost.hardware_price_table: {exc}. Fix: point it at a readable "
                              "YAML file shaped like the shipped tunewise/catalog/hardware_prices.yaml.") from None
    if not isinstance(loaded, dict):
        raise PriceTableError(f"{path}: cost.hardware_price_table must be a mapping with `cpu` and `gpu` lists. "
                              "Fix: copy the shipped tunewise/catalog/hardware_prices.yaml.")
    return loaded, str(path)
