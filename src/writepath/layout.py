"""Where a scenario's user regions lie: one contiguous, page-aligned run, in file order.

Shared by the model and the real-kernel oracle so that both resolve ``[region, offset, length]``
the same way relative to their own base address.
"""

from __future__ import annotations

from writepath.kernel.constants import KERNEL_ADDRESS
from writepath.scenario import IovSpec, RegionSpec

#: Where the first region lies, in the model and in the oracle alike: fault-around windows and
#: access_ok() on huge lengths depend on the address, so both use the same one.
MODEL_BASE = 0x7F00_0000_0000

#: Pages before the first region and after the last that nothing may ever occupy. The model has
#: no VMA there (an access fails as in a hole); the oracle keeps them mapped PROT_NONE, which
#: fails the same way in the kernel and stops the oracle's own memory from landing next to the
#: regions, where an iov running past the last region would read it.
GUARD_PAGES = 1


def region_bases(regions: tuple[RegionSpec, ...], base: int) -> dict[str, int]:
    out: dict[str, int] = {}
    addr = base
    for r in regions:
        out[r.name] = addr
        addr += r.length
    return out


def total_length(regions: tuple[RegionSpec, ...]) -> int:
    return sum(r.length for r in regions)


def iov_address(iov: IovSpec, bases: dict[str, int]) -> int:
    """The user address an iov entry names: region start + offset; ``null`` is address 0 and
    ``kernel`` an address in the kernel's direct map."""
    if iov.region == "null":
        return iov.offset
    if iov.region == "kernel":
        return KERNEL_ADDRESS + iov.offset
    return bases[iov.region] + iov.offset
