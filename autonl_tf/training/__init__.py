"""Training of autonl_tf: the paper's retraining recipe on tf.distribute, and a generic driver.

Modules (import what you need; this package does not import TensorFlow eagerly):
  config       named experiment configs (configs/<name>.py), overrides, `ConfigError`
  strategy     `create_strategy` (TPU / multi-worker / GPUs / CPU), batch splitting, XLA default
  optimizer    `TF1RMSprop`: RMSProp with TF1 epsilon placement, ms init and EMA decay
  schedules    `WarmupExponentialDecay`
  losses       label-smoothed sparse cross-entropy, L2 weight decay on kernels
  recipe       resolved config -> compiled classifier
  driver       `fit`: multi-step loop, checkpoints/resume, NaN guard, summaries, throughput/ETA
  checkpoints  config.json, EMA swap, `load_model_for_inference`
  evaluation   exact weighted top-1/top-5, eval_results.json, continuous evaluation
  experiment   the programs behind train_main.py / eval_main.py
"""
