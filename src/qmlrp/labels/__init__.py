"""Aim 3 labels: static first hyperpolarizability β (with α and μ) of QM9 molecules.

* :mod:`~qmlrp.labels.beta` - PySCF RHF/RKS β, α, μ of one molecule; β∥ and |β_vec|.
* :mod:`~qmlrp.labels.xc_kernel` - the XC third-derivative term of DFT β (LDA, GGA).
* :mod:`~qmlrp.labels.records` - label-table schema, Parquet shards, failures, journal.
* :mod:`~qmlrp.labels.config` - the ``label_beta`` params: one frozen, typed dataclass.
* :mod:`~qmlrp.labels.selection` - the seeded uniform sample of QM9 to label.
* :mod:`~qmlrp.labels.sanity` - geometry and result checks every label passes before it is stored.
* :mod:`~qmlrp.labels.run` - the ``label_beta`` stage: tasks, journal, shards, metrics.
* :mod:`~qmlrp.labels.dalton_write` / :mod:`~qmlrp.labels.dalton_read` - DALTON inputs and outputs.
* :mod:`~qmlrp.labels.commands` - ``qmlrp label-beta``, ``dalton-write``, ``dalton-read``.
"""
