"""Write docs/manifest.schema.json, the JSON Schema of candor.json, from the manifest's dataclasses.

``python docs/render.py`` (``make schema``); a test fails when the file is stale.
"""

from pathlib import Path

from candor.calibration.manifest import manifest_json_schema, write_json_atomic

if __name__ == "__main__":
    write_json_atomic(manifest_json_schema(), Path(__file__).resolve().parent / "manifest.schema.json")
