"""The RPCs declared under ``protos/``, read from the .proto text itself.

Read from the source rather than from generated modules: importing the generated KServe
module would register ``inference.*`` in the default descriptor pool, where tritonclient's
own copy of the same protocol (used by the KServe tests) would clash with it.
"""

from __future__ import annotations

import re
from pathlib import Path

PROTOS = Path(__file__).resolve().parent.parent / "protos"


def declared_rpcs(protos: Path = PROTOS) -> list[tuple[str, str, bool]]:
    """(``package.Service``, method, streams requests) for every RPC declared under ``protos``."""
    found = []
    for path in sorted(protos.rglob("*.proto")):
        text = path.read_text(encoding="utf-8")
        package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
        for service, body in re.findall(r"service (\w+) \{(.*?)\n\}", text, re.S):
            found += [(f"{package}.{service}", m, bool(s)) for m, s in re.findall(r"rpc (\w+)\((stream )?\w+\)", body)]
    return found
