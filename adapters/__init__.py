"""Toolkit adapters, installed as ``fastdfkd_plugin.adapters`` (one module per toolkit).

They hand a :class:`~fastdfkd_plugin.DataSource`'s batches to each compression
toolkit in the shape that toolkit already takes.
"""
