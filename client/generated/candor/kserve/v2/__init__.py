"""Generated from protos/ by `python -m candor.client.codegen`; do not edit."""
