#!/usr/bin/env python
"""The prepared GPU session (SCP grid + GPU benchmark in ~10 minutes); see hf_primaldual/gpu_session.py."""

from hf_primaldual.gpu_session import main

if __name__ == "__main__":
    raise SystemExit(main())
