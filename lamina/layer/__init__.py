"""Layers: Docker's layerdb of read-only layers keyed by chainID (see :mod:`lamina.layer.store`)."""

from lamina.layer.store import Layer, LayerStore, Lease

__all__ = ["Layer", "LayerStore", "Lease"]
