"""Generated from protos/ by `python protos/codegen.py`; do not edit."""
