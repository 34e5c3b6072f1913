"""Aim 3 labels: static first hyperpolarizability β (with α and μ) of QM9 molecules.

* :mod:`~qmlrp.labels.beta` - PySCF RHF/RKS β, α, μ of one molecule; β∥ and |β_vec|.
* :mod:`~qmlrp.labels.xc_kernel` - the XC third-derivative term of DFT β (LDA, GGA).
* :mod:`~qmlrp.labels.records` - label-table schema, Parquet shards, failures, journal.
* :mod:`~qmlrp.labels.orchestrate` - the ``label_beta`` stage on Dask (local, address, SLURM/PBS).
* :mod:`~qmlrp.labels.dalton_write` / :mod:`~qmlrp.labels.dalton_read` - DALTON inputs and outputs.
* :mod:`~qmlrp.labels.commands` - ``qmlrp label-beta``, ``dalton-write``, ``dalton-read``.
"""
