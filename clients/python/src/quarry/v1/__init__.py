"""Generated from proto/quarry/v1 by scripts/generate_stubs.py; do not edit."""
