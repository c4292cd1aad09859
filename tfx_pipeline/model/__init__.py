"""Model code, kept apart from the pipeline that runs it (TFX's module file).

- `preprocessing`: raw strings -> token ids, as TF ops; the one tokenization
  used by Transform, training and the exported serving signatures.
- `backbone`: the BERT encoder named by a keras-hub preset.
- `tasks`: one `Task` per `model.task` (what the pipeline does differently for it),
  and the task heads composed onto the backbone.
- `training_data`: tf.data input from Transform's TFRecords.
- `distribution`: the tf.distribute strategy chosen by configuration.
- `export`: the SavedModel that TF Serving serves.
"""
