"""The classifier recipe of AutoNL: the paper's retraining hyper-parameters and what they build.

Modules (import what you need; this package does not import TensorFlow eagerly):
  defaults     `get_base_config`: every key of the recipe and its default (configs/ start here)
  recipe       resolved config -> classifier, optimizer, loss, metrics; a trained classifier
               rebuilt from its model dir (`load_model_for_inference`)
  task         `ClassifierTask` (the recipe in the experiment runner), `train_experiment`
  optimizer    `TF1RMSprop`: RMSProp with TF1 epsilon placement, ms init and EMA decay
  schedules    `WarmupExponentialDecay`
  losses       label-smoothed sparse cross-entropy, L2 weight decay on kernels
"""
