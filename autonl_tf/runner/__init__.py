"""The run machinery that training and the search share (no model of its own).

Modules (import what you need; this package does not import TensorFlow eagerly):
  config       named experiment configs (configs/<name>.py, the one place that locates that
               folder), overrides, `ConfigError`
  cli          command-line plumbing: strategy flags, flag -> config-key overrides, exit codes
  strategy     `create_strategy` (TPU / multi-worker / GPUs / CPU), batch splitting, XLA and
               bfloat16 defaults (`resolve_execution`)
  driver       `fit`: multi-step loop, checkpoints/resume, NaN guard, summaries, throughput/ETA
  checkpoints  config.json, model identity, restoring, EMA swap, the model dir's lock
  evaluation   exact weighted top-1/top-5, eval_results.json, continuous evaluation
  progress     log lines, throughput/ETA, TensorBoard scalars
  experiment   `ExperimentTask`, `run_experiment` (training and the search),
               `evaluate_experiment` (a model dir's checkpoints)

The tasks live with their models: `autonl_tf.recipe.task.ClassifierTask` (the retraining
recipe) and `autonl_tf.search.experiment.SearchTask`.
"""
