"""Training, evaluation and prediction of the Weave models (stages ``train``, ``evaluate``; ``qmlrp predict``)."""
