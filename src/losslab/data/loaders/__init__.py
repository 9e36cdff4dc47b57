"""Builders of the catalogued datasets, one module per modality.

Each builder takes the cache root and returns a :class:`losslab.data.catalog.RawData`
holding the arrays exactly as they are cached (images as uint8 pixels).
"""
