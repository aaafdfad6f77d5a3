"""What a training batch holds: the one list of its features.

Every batch that codemix/data/pipeline.py yields (and the train state's
shardings, codemix/train/state.py) has these keys. Kept apart from the
pipeline so the training side can read it without importing TensorFlow.
"""

# [rows, sequence_length] arrays: tokens, document numbers and positions
# within a packed row, and loss weights (float; the rest int32).
ROW_FEATURES = (
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_segment_ids",
    "decoder_positions",
    "decoder_loss_weights",
)
# [rows] vectors: the row's task index in the mixture and its pass over that task.
VECTOR_FEATURES = ("source_id", "epoch")
