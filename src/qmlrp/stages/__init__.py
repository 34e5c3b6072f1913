"""Stages that join training and relevance (the top layer: data -> features -> labels -> targets ->
models -> training / relevance -> stages)."""
