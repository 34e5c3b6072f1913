"""Weave graph-convolution models (Kearnes et al. 2016; Faber et al. 2017) in Keras 3.

Modules: :mod:`~qmlrp.models.gc` (the composed model, :func:`~qmlrp.models.gc.build_model`),
:mod:`~qmlrp.models.weave`, :mod:`~qmlrp.models.readout`, :mod:`~qmlrp.models.head`,
:mod:`~qmlrp.models.layers` (linear maps with explicit weights), :mod:`~qmlrp.models.inputs`
(input dict and input layer), :mod:`~qmlrp.models.dense` (naive padded variant),
:mod:`~qmlrp.models.io` (``.npz`` weights files). Nothing is imported here, so that reading
:mod:`~qmlrp.models.config` does not load Keras.
"""
