"""Dataparsers that also load per-pixel semantic and instance labels (as nerfstudio ``Semantics``)."""
