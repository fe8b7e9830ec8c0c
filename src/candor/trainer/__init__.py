"""The trainer (torch): data, models, label-smoothing losses, training,
temperature scaling, ONNX export, reports and sweeps.

>>> from candor.trainer.pipeline import TrainOptions, fit, publish  # doctest: +SKIP
>>> trained = fit(TrainOptions(dataset="digits", smoothing="uniform", epsilon=0.1))  # doctest: +SKIP
>>> publish(trained, "models", "digits")  # doctest: +SKIP
PosixPath('models/digits/1')
"""
